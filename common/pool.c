/* pool.c: see pool.h. Workers sleep on a condition variable between loops;
 * a loop is published as a generation number, each worker runs its own
 * range and counts itself done. */
#include "pool.h"
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MAX 256
#define POOL_MSG 512

struct olmoe_pool {
    int n;                 /* threads, the caller included */
    pthread_t th[POOL_MAX];
    int started;           /* worker threads running (n - 1 when all started) */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;          /* loop number; workers run when it moves */
    int pending;           /* workers still running the current loop */
    int stop;
    int64_t len;
    int (*fn)(void *, int64_t, int64_t);
    void *arg;
    int rc[POOL_MAX];
    char msg[POOL_MAX][POOL_MSG];
};

typedef struct {
    olmoe_pool *p;
    int id;
} worker_arg;

static void run_part(olmoe_pool *p, int id) {
    int64_t lo = p->len * id / p->n, hi = p->len * (id + 1) / p->n;
    p->rc[id] = lo < hi ? p->fn(p->arg, lo, hi) : 0;
    if (p->rc[id] != 0) snprintf(p->msg[id], POOL_MSG, "%s", olmoe_error());
}

static void *worker(void *a) {
    worker_arg *wa = a;
    olmoe_pool *p = wa->p;
    int id = wa->id;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_part(p, id);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

olmoe_pool *olmoe_pool_open(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > POOL_MAX) n_threads = POOL_MAX;
    olmoe_pool *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n = 1;
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = xmalloc(sizeof *wa);
        wa->p = p, wa->id = i;
        if (pthread_create(&p->th[i], NULL, worker, wa) != 0) {
            free(wa);
            break;
        }
        p->n = i + 1;
    }
    p->started = p->n - 1;
    return p;
}

int olmoe_pool_threads(const olmoe_pool *p) { return p ? p->n : 1; }

int olmoe_pool_for(olmoe_pool *p, int64_t n, int (*fn)(void *arg, int64_t lo, int64_t hi), void *arg) {
    if (n <= 0) return 0;
    if (!p || p->n == 1 || n == 1) return fn(arg, 0, n);
    pthread_mutex_lock(&p->mu);
    p->len = n, p->fn = fn, p->arg = arg;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_part(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->rc[i] != 0) return olmoe_errorf("%s", p->msg[i]);
    return 0;
}

void olmoe_pool_close(olmoe_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i <= p->started; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}
