#!/usr/bin/env python3
# peak_mem.py — run a command and report its memory: "RC MAXRSS_KIB PEAK_ANON_KIB" on stdout (tests/cli/bank_stream.sh).
#   peak_mem.py OUTDIR [--stdin FILE] -- CMD...   stdout/stderr of CMD go to OUTDIR/out and OUTDIR/err;
#   --stdin FILE feeds FILE through a pipe (cat), else stdin is /dev/null.
# MAXRSS is getrusage(RUSAGE_CHILDREN).ru_maxrss: the largest resident set of any process of the command
# (file pages of mappings included). PEAK_ANON is the largest RssAnon (heap and other private memory, no
# file pages) summed over the command's process tree, sampled every 5 ms from /proc: what "memory held"
# means for a program that reads big files through mmap.
import os, resource, subprocess, sys, time

def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out

def anon_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

outdir, args = sys.argv[1], sys.argv[2:]
src = None
if args[:1] == ["--stdin"]:
    src, args = args[1], args[2:]
if args[:1] == ["--"]:
    args = args[1:]
with open(outdir + "/out", "wb") as out, open(outdir + "/err", "wb") as err:
    cat = subprocess.Popen(["cat", src], stdout=subprocess.PIPE) if src else None
    proc = subprocess.Popen(args, stdin=cat.stdout if cat else subprocess.DEVNULL, stdout=out, stderr=err)
    if cat:
        cat.stdout.close()
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(anon_kib(p) for p in tree(proc.pid)))
        time.sleep(0.005)
    if cat:
        cat.wait()
rc = proc.returncode
print(rc if rc >= 0 else 128 - rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, peak)
