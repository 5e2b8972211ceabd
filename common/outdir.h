/* outdir.h (part of common.h: include common.h):
 * an output that is a directory of files (olmoe-report), with the
 * guarantees olmoe_out_begin/commit give a single file.
 *
 *   olmoe_outdir od;
 *   if (olmoe_outdir_begin(&od, "report", "report.md", force) != 0) die("%s", olmoe_error());
 *   char *p = olmoe_outdir_file(&od, "fig.dat");   // "report.partial/fig.dat", registered
 *   ... write p, let other programs write into od.tmp ...
 *   if (olmoe_outdir_commit(&od) != 0) die("%s", olmoe_error());
 *
 * The files are written into "<dir>.partial/" and the directory is renamed
 * into place when complete. An existing <dir> is refused without force; with
 * force it is replaced only when it is empty or holds the marker file (a
 * previous output of the same command) and no subdirectories, so that
 * `--force` on a wrong path never deletes a user's directory. Until commit,
 * die(), exit() and SIGINT/SIGTERM remove the partial directory: every file
 * in it must be registered (olmoe_outdir_file or olmoe_outdir_expect) so the
 * signal handler can unlink it without reading the directory.
 */
#ifndef OLMOE_OUTDIR_H
#define OLMOE_OUTDIR_H

typedef struct {
    char *final;  /* the directory the user asked for */
    char *tmp;    /* "<final>.partial" while being written */
    char *marker; /* a file whose presence marks a replaceable old output */
    int force;
} olmoe_outdir;

int olmoe_outdir_begin(olmoe_outdir *o, const char *final, const char *marker, int force);
/* "<tmp>/<name>", fresh string (caller frees), registered for cleanup */
char *olmoe_outdir_file(olmoe_outdir *o, const char *name);
/* registers a file another program will create in tmp */
void olmoe_outdir_expect(olmoe_outdir *o, const char *name);
/* removes a registered file now (a leftover that must not be committed) */
void olmoe_outdir_unlink(olmoe_outdir *o, const char *name);
/* fsyncs the files, replaces an old <final> (force), renames tmp into place */
int olmoe_outdir_commit(olmoe_outdir *o);
/* removes the partial directory and frees o */
void olmoe_outdir_abort(olmoe_outdir *o);

#endif
