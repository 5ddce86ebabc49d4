/* bench_msa.h — `msa bench route|encode` (bench_msa.c): MSA memory benchmarks. */
#ifndef MSA_TOOLS_BENCH_MSA_H
#define MSA_TOOLS_BENCH_MSA_H

/* what is "route" or "encode"; argc/argv start at the benchmark name. Returns an exit code. */
int bench_msa(const char *what, int argc, char **argv);

#endif
