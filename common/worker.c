/* worker.c: see worker.h. A mutex and one condition variable guard the job
 * slot; the thread sleeps while it is empty. */
#include "worker.h"

#include "common.h"

#include <stdio.h>
#include <string.h>

static void *loop(void *p) {
    olmoe_worker *w = p;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->fn && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->fn) break; /* stop, nothing pending */
        int (*fn)(void *) = w->fn;
        void *arg = w->arg;
        pthread_mutex_unlock(&w->mu);
        int rc = fn(arg);
        pthread_mutex_lock(&w->mu);
        if (rc != 0) {
            w->failed = 1;
            snprintf(w->err, sizeof w->err, "%s", olmoe_error());
        }
        w->fn = NULL;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int olmoe_worker_start(olmoe_worker *w) {
    memset(w, 0, sizeof *w);
    if (pthread_mutex_init(&w->mu, NULL) != 0 || pthread_cond_init(&w->cv, NULL) != 0)
        return olmoe_errorf("cannot initialise the writer thread's lock");
    if (pthread_create(&w->thread, NULL, loop, w) != 0) return olmoe_errorf("cannot start the writer thread");
    w->started = 1;
    return 0;
}

/* with w->mu held */
static int wait_idle(olmoe_worker *w) {
    while (w->fn) pthread_cond_wait(&w->cv, &w->mu);
    return w->failed ? -1 : 0;
}

int olmoe_worker_submit(olmoe_worker *w, int (*fn)(void *), void *arg) {
    pthread_mutex_lock(&w->mu);
    int rc = wait_idle(w);
    if (rc == 0) {
        w->fn = fn;
        w->arg = arg;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc == 0 ? 0 : olmoe_errorf("%s", w->err);
}

int olmoe_worker_wait(olmoe_worker *w) {
    pthread_mutex_lock(&w->mu);
    int rc = wait_idle(w);
    pthread_mutex_unlock(&w->mu);
    return rc == 0 ? 0 : olmoe_errorf("%s", w->err);
}

void olmoe_worker_stop(olmoe_worker *w) {
    if (!w->started) return;
    pthread_mutex_lock(&w->mu);
    wait_idle(w);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = 0;
}
