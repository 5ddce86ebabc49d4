/* fault_guard.c — SIGBUS on a mapped read as an error (fault_guard.h). msa maps bank segments read-only; a read
 * of a page whose disk block fails, or beyond the end of a file someone truncated, is delivered as SIGBUS,
 * which kills the process (an mmap reader's usual fate). After msa_catch_mapping_faults() the handler sends a
 * SIGBUS raised inside a guarded region back to that region's sigsetjmp (per thread), and hands any other
 * SIGBUS to the disposition it replaced, so an application's own handler still sees its faults. The library
 * never installs the handler by itself: signal dispositions belong to the application (the CLI opts in). */
#include "util/fault_guard.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>

#include "msa.h"

static _Thread_local sigjmp_buf *armed; /* the innermost guarded region on this thread, or NULL */
static struct sigaction previous;       /* the SIGBUS disposition before ours */
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_error;

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
    sigjmp_buf *j = armed;
    if (j) {
        armed = NULL;
        siglongjmp(*j, 1);
    }
    /* not a guarded read: the previous disposition decides (returning re-executes the faulting access) */
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) {
            previous.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    sigaction(SIGBUS, &previous, NULL);
}

static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    install_error = sigaction(SIGBUS, &sa, &previous) != 0;
}

msa_status msa_catch_mapping_faults(void) {
    pthread_once(&install_once, install);
    return install_error ? MSA_ERR_IO : MSA_OK;
}

bool fault_guard_run(void (*fn)(void *arg), void *arg) {
    sigjmp_buf here, *outer = armed;
    /* volatile: read after a siglongjmp back into this frame */
    volatile bool ok = false;
    if (sigsetjmp(here, 1) == 0) {
        armed = &here;
        fn(arg);
        ok = true;
    }
    armed = outer;
    return ok;
}

typedef struct copy_args {
    void *dst;
    const void *src;
    size_t n;
} copy_args;

static void copy_body(void *arg) {
    const copy_args *c = arg;
    memcpy(c->dst, c->src, c->n);
}

bool fault_guard_copy(void *dst, const void *src, size_t n) {
    copy_args c = {dst, src, n};
    return fault_guard_run(copy_body, &c);
}
