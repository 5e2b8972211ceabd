/* worker.h (part of common.h: include common.h):
 * one background thread that runs one job at a time, so that a
 * producer (the GPU forward pass) and a consumer (the HDF5 writer) overlap:
 *
 *   olmoe_worker wk;
 *   olmoe_worker_start(&wk);
 *   for each batch:
 *       produce(batch);                                 // fills buffer set b % 2
 *       if (olmoe_worker_submit(&wk, write_batch, &job[b % 2]) != 0)  // waits for
 *           die("%s", olmoe_error());                   // the previous job first
 *   if (olmoe_worker_wait(&wk) != 0) die("%s", olmoe_error());
 *   olmoe_worker_stop(&wk);
 *
 * A job returns 0, or -1 after olmoe_errorf(); its message is carried to the
 * thread that waits (olmoe_error() is thread-local). After a failed job the
 * worker takes no more jobs.
 */
#ifndef OLMOE_WORKER_H
#define OLMOE_WORKER_H

#include <pthread.h>

typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int (*fn)(void *arg); /* the pending or running job, NULL when idle */
    void *arg;
    int stop, failed, started;
    char err[1024];
} olmoe_worker;

int olmoe_worker_start(olmoe_worker *w);
/* waits for the job in flight (returning -1 if it or an earlier one failed,
 * without queueing fn), then queues fn(arg) and returns 0 */
int olmoe_worker_submit(olmoe_worker *w, int (*fn)(void *arg), void *arg);
/* waits until idle; -1 if a job failed */
int olmoe_worker_wait(olmoe_worker *w);
/* waits, then ends the thread */
void olmoe_worker_stop(olmoe_worker *w);

#endif
