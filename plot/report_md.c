/* report_md.c: report.md, the readable study. Every number is printed from
 * the results as read (olmoe_report_data), with fixed formats a test can
 * parse back: perplexity %.4f, shares %.4f, experts %.3f, percentages %.2f
 * (Δ vs baseline %+.3f). Policy ids are in backquotes (they hold '_'). Figures
 * are embedded where their section is, as ![title](name.png). */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void cell(FILE *md, const char *fmt, double v) {
    fputs(" ", md);
    if (isfinite(v)) fprintf(md, fmt, v);
    else fputs("–", md);
    fputs(" |", md);
}

static void figures(FILE *md, const rep_out *o, const char *section) {
    for (int i = 0; i < o->n_figs; i++)
        if (!strcmp(o->figs[i].section, section) && o->figs[i].ok)
            fprintf(md, "\n![%s](%s.png)\n", o->figs[i].title, o->figs[i].name);
}

static int count_kind(const olmoe_report_data *d, int k) {
    int n = 0;
    for (int i = 0; i < d->n_policies; i++) n += d->pol[i].res[k].present;
    return n;
}

static void provenance(FILE *md, const olmoe_report_data *d, const olmoe_report_opts *opts) {
    fprintf(md, "## Provenance\n\n| | |\n| --- | --- |\n");
    fprintf(md, "| inputs |");
    for (int i = 0; i < d->n_inputs; i++) fprintf(md, "%s`%s`", i ? ", " : " ", d->inputs[i]);
    fprintf(md, " |\n");
    if (d->trace) {
        const olmoe_trace_info *in = olmoe_trace_info_of(d->trace);
        const olmoe_trace_meta *m = &in->meta;
        fprintf(md, "| trace | `%s` (%s) |\n", d->trace_path, in->complete ? "complete" : "incomplete");
        fprintf(md, "| model | `%s`: %d layers × %d experts, top-%d (norm_topk_prob %d), hidden %d, vocab %d |\n",
                m->model_dir, m->n_layers, m->n_experts, m->top_k, m->norm_topk_prob, m->hidden_size,
                m->vocab_size);
        fprintf(md, "| model checksum | `%s` |\n", m->model_checksum);
        fprintf(md, "| tokenizer checksum | `%s` |\n", *m->tokenizer_checksum ? m->tokenizer_checksum : "(token ids given)");
        fprintf(md, "| corpus | `%s` |\n", *m->corpus ? m->corpus : "(token ids)");
        fprintf(md, "| tokens | %lld (%lld scored, %lld windows) |\n", (long long)in->n_tokens,
                (long long)in->n_scored, (long long)in->n_windows);
        if (m->stride) fprintf(md, "| windows | ctx %d, stride %d |\n", m->ctx, m->stride);
        else fprintf(md, "| windows | ctx %d, no stride |\n", m->ctx);
        fprintf(md, "| document groups | %d |\n", d->n_groups);
        fprintf(md, "| device | %s (%s), router logits %s |\n", m->device, m->compute_dtype,
                olmoe_trace_dtype_name(m->logits_dtype));
        fprintf(md, "| routing captured | `%s` |\n", m->policy);
        fprintf(md, "| captured | %s by olmoe %s |\n", m->created, m->tool_version);
    } else {
        fprintf(md, "| trace | not at hand (the results name none that opens): no provenance |\n");
        fprintf(md, "| model | %d layers × %d experts, baseline top-%d |\n", d->L, d->E, d->top_k);
    }
    fprintf(md, "| baseline perplexity | ");
    if (isfinite(d->baseline_ppl)) fprintf(md, "%.4f |\n", d->baseline_ppl);
    else fprintf(md, "– |\n");
    if (d->has_null)
        fprintf(md, "| null distribution | `%s`: %d layer(s), %s, %s bandwidth, from %lld tokens of `%s` |\n",
                d->kde_path, d->null.n_fits, d->null.construction, d->null.rule,
                (long long)(d->null.n_fits ? d->null.fits[0].n_tokens : 0), d->null.source);
    fprintf(md, "\nCommands:\n\n```\n");
    for (int i = 0; i < d->n_commands; i++) fprintf(md, "# %s\n%s\n", d->cmd[i].what, d->cmd[i].command);
    if (opts->command) fprintf(md, "# report\n%s\n", opts->command);
    fprintf(md, "```\n");
    rep_md_records(md, d);
}

static void quality_tables(FILE *md, const olmoe_report_data *d) {
    static const char *const head[] = {"### Replay (frozen attention)", "### Exact forward"};
    for (int k = OLMOE_REPORT_REPLAY; k <= OLMOE_REPORT_EXACT; k++) {
        if (!count_kind(d, k)) continue;
        fprintf(md, "\n%s\n\n", head[k]);
        if (k == OLMOE_REPORT_REPLAY)
            fprintf(md, "Attention frozen at its captured value: an optimistic estimate whenever a policy "
                        "changes earlier layers (docs/DESIGN.md §8); the exact forward pass measures it.\n\n");
        if (k == OLMOE_REPORT_REPLAY && d->replay_check) fprintf(md, "%s\n\n", d->replay_check);
        fprintf(md, "| policy | perplexity | Δ vs baseline | token accuracy | experts/token | sd | at min_k | "
                    "at max_k | compute saved | scored tokens | tokens/s |\n");
        fprintf(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (int i = 0; i < d->n_policies; i++) {
            const olmoe_report_result *r = &d->pol[i].res[k];
            if (!r->present) continue;
            double base = isfinite(r->baseline_perplexity) ? r->baseline_perplexity : d->baseline_ppl;
            fprintf(md, "| `%s` |", d->pol[i].id);
            cell(md, "%.4f", r->perplexity);
            cell(md, "%+.3f %%", 100 * (r->perplexity / base - 1));
            cell(md, "%.2f %%", 100 * r->accuracy);
            cell(md, "%.3f", r->mean_k);
            cell(md, "%.3f", r->sd_k);
            cell(md, "%.4f", r->share_min_k);
            cell(md, "%.4f", r->share_max_k);
            cell(md, "%.2f %%", 100 * r->compute_saved);
            cell(md, "%.0f", r->n_scored >= 0 ? (double)r->n_scored : NAN);
            cell(md, "%.0f", r->tokens_per_second);
            fputc('\n', md);
        }
    }
    if (count_kind(d, OLMOE_REPORT_STATS)) {
        fprintf(md, "\n### Routing statistics (captured logits)\n\n");
        fprintf(md, "Each policy applied to the captured router logits, no model (`olmoe-replay --mode stats`): "
                    "what it selects, not what it costs in quality. Coverage is the share of the baseline's "
                    "top-%d experts kept.\n\n", d->top_k);
        fprintf(md, "| policy | experts/token | sd | at min_k | at max_k | compute saved | coverage | load CV |\n");
        fprintf(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (int i = 0; i < d->n_policies; i++) {
            const olmoe_report_result *r = &d->pol[i].res[OLMOE_REPORT_STATS];
            if (!r->present) continue;
            fprintf(md, "| `%s` |", d->pol[i].id);
            cell(md, "%.3f", r->mean_k);
            cell(md, "%.3f", r->sd_k);
            cell(md, "%.4f", r->share_min_k);
            cell(md, "%.4f", r->share_max_k);
            cell(md, "%.2f %%", 100 * r->compute_saved);
            cell(md, "%.4f", r->coverage);
            cell(md, "%.4f", r->load_cv);
            fputc('\n', md);
        }
    }
}

static const char *source_of(const olmoe_report_policy *p) {
    const olmoe_report_result *r = olmoe_report_routing(p);
    return r == &p->res[OLMOE_REPORT_REPLAY] ? "replay" : r == &p->res[OLMOE_REPORT_EXACT] ? "exact" : "stats";
}

static void layer_tables(FILE *md, const olmoe_report_data *d) {
    const int L = d->L, E = d->E;
    for (int t = 0; t < 2; t++) {
        int any = 0;
        for (int i = 0; i < d->n_policies; i++) {
            const olmoe_report_result *r = olmoe_report_routing(&d->pol[i]);
            if (d->pol[i].selected && r && (t ? r->load_cv_layer != NULL : (r->mean_k_layer || r->k_hist))) any = 1;
        }
        if (!any) continue;
        fprintf(md, "\n%s\n\n| policy | from |", t ? "**Load CV per layer** (sd / mean of the experts' load)"
                                                  : "**Experts per token, per layer** (mean)");
        for (int l = 0; l < L; l++) fprintf(md, " %d |", l);
        fprintf(md, "\n| --- | --- |");
        for (int l = 0; l < L; l++) fprintf(md, " ---: |");
        fputc('\n', md);
        for (int i = 0; i < d->n_policies; i++) {
            const olmoe_report_result *r = olmoe_report_routing(&d->pol[i]);
            if (!d->pol[i].selected || !r) continue;
            if (t ? !r->load_cv_layer : (!r->mean_k_layer && !r->k_hist)) continue;
            fprintf(md, "| `%s` | %s |", d->pol[i].id, source_of(&d->pol[i]));
            for (int l = 0; l < L; l++) {
                double v;
                if (t) {
                    v = r->load_cv_layer[l];
                } else if (r->mean_k_layer) {
                    v = r->mean_k_layer[l];
                } else {
                    double s = 0, c = 0;
                    for (int k = 0; k <= E; k++) {
                        s += k * (double)r->k_hist[(size_t)l * (E + 1) + k];
                        c += (double)r->k_hist[(size_t)l * (E + 1) + k];
                    }
                    v = c > 0 ? s / c : NAN;
                }
                cell(md, t ? "%.4f" : "%.3f", v);
            }
            fputc('\n', md);
        }
    }
}

static void group_tables(FILE *md, const olmoe_report_data *d) {
    /* the group names of the first selected policy with groups, per kind */
    for (int k = 0; k < OLMOE_REPORT_KIND_COUNT; k++) {
        const olmoe_report_result *ref = NULL;
        for (int i = 0; i < d->n_policies && !ref; i++)
            if (d->pol[i].selected && d->pol[i].res[k].present && d->pol[i].res[k].n_groups > 0)
                ref = &d->pol[i].res[k];
        if (!ref) continue;
        for (int t = (k == OLMOE_REPORT_STATS ? 1 : 0); t < 2; t++) {
            fprintf(md, "\n**%s, %s, by document group**\n\n| policy |", t ? "Experts per token" : "Perplexity",
                    olmoe_report_kind_names[k]);
            for (int g = 0; g < ref->n_groups; g++) fprintf(md, " %s |", ref->group_names[g]);
            fprintf(md, "\n| --- |");
            for (int g = 0; g < ref->n_groups; g++) fprintf(md, " ---: |");
            fputc('\n', md);
            for (int i = 0; i < d->n_policies; i++) {
                const olmoe_report_result *r = &d->pol[i].res[k];
                if (!d->pol[i].selected || !r->present || r->n_groups == 0) continue;
                fprintf(md, "| `%s` |", d->pol[i].id);
                for (int g = 0; g < ref->n_groups; g++) {
                    int j = -1;
                    for (int h = 0; h < r->n_groups; h++)
                        if (r->group_names[h] && !strcmp(r->group_names[h], ref->group_names[g])) j = h;
                    double v = j < 0 ? NAN : t ? r->group_mean_k[j] : r->group_ppl[j];
                    cell(md, t ? "%.3f" : "%.4f", v);
                }
                fputc('\n', md);
            }
        }
    }
}

static void fidelity_table(FILE *md, const olmoe_report_validate *v) {
    if (!v->present) return;
    fprintf(md, "\nFrom `/validate` of `%s`", v->file);
    if (v->ranking_agrees >= 0)
        fprintf(md, ": the policies' perplexity ranking %s (Kendall τ %.4f)", v->ranking_agrees ? "agrees" : "differs",
                v->kendall_tau);
    fprintf(md, ".\n\n| policy | replay perplexity | exact perplexity | replay / exact − 1 | NLL correlation | "
                "mean abs NLL diff | replay s | exact s |\n");
    fprintf(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < v->n; i++) {
        fprintf(md, "| `%s` |", v->policy[i]);
        cell(md, "%.4f", v->replay_ppl[i]);
        cell(md, "%.4f", v->exact_ppl[i]);
        cell(md, "%+.3f %%", 100 * v->rel_diff[i]);
        cell(md, "%.4f", v->nll_corr[i]);
        cell(md, "%.4f", v->nll_mad[i]);
        cell(md, "%.2f", v->replay_seconds[i]);
        cell(md, "%.2f", v->exact_seconds[i]);
        fputc('\n', md);
    }
}

static void null_table(FILE *md, const olmoe_report_data *d) {
    fprintf(md, "\n| layer | sample | tokens | bandwidth | mean | sd | q0.01 | median | q0.99 | KS |\n");
    fprintf(md, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int f = 0; f < d->null.n_fits; f++) {
        const olmoe_kde_layer *l = &d->null.fits[f];
        fprintf(md, "| %d | %lld | %lld |", l->layer, (long long)l->n, (long long)l->n_tokens);
        cell(md, "%.5g", l->bandwidth);
        cell(md, "%.4f", l->mean);
        cell(md, "%.4f", l->sd);
        cell(md, "%.4f", l->quantiles[1]);
        cell(md, "%.4f", l->quantiles[4]);
        cell(md, "%.4f", l->quantiles[7]);
        cell(md, "%.3e", l->ks);
        fputc('\n', md);
    }
    fprintf(md, "\nA KS distance above about 0.01 says the smooth null misses the logits' shape and "
                "p-values from it are rough (olmoe-kde(1)).\n");
}

/* a per-layer table of an analysis: columns are 1-D datasets of its group */
static void analysis_table(FILE *md, const olmoe_report_data *d, const olmoe_report_analysis *a,
                           const char *const *cols, const char *const *heads, int nc, int pairs) {
    hid_t h = d->h5[a->input];
    void *lab[2] = {0}, *v[8] = {0};
    int r;
    int64_t dims[OLMOE_H5_MAX_RANK], n = -1;
    char p[600];
    int ok = 1;
    for (int k = 0; k < (pairs ? 2 : 1) && ok; k++) {
        snprintf(p, sizeof p, "%s/%s", a->path, pairs ? (k ? "layer_to" : "layer_from") : "layer");
        ok = olmoe_h5_exists(h, p) == 1 && olmoe_h5_read_alloc(h, p, OLMOE_H5_I64, &lab[k], &r, dims) == 0 && r == 1;
        if (ok) n = dims[0];
    }
    for (int c = 0; c < nc && ok; c++) {
        snprintf(p, sizeof p, "%s/%s", a->path, cols[c]);
        ok = olmoe_h5_exists(h, p) == 1 && olmoe_h5_read_alloc(h, p, OLMOE_H5_F64, &v[c], &r, dims) == 0 && r == 1 &&
             dims[0] == n;
    }
    if (ok) {
        fprintf(md, "\n| layer |");
        for (int c = 0; c < nc; c++) fprintf(md, " %s |", heads[c]);
        fprintf(md, "\n| ---: |");
        for (int c = 0; c < nc; c++) fprintf(md, " ---: |");
        fputc('\n', md);
        for (int64_t i = 0; i < n; i++) {
            if (pairs)
                fprintf(md, "| %lld → %lld |", (long long)((int64_t *)lab[0])[i], (long long)((int64_t *)lab[1])[i]);
            else
                fprintf(md, "| %lld |", (long long)((int64_t *)lab[0])[i]);
            for (int c = 0; c < nc; c++) cell(md, "%.4f", ((double *)v[c])[i]);
            fputc('\n', md);
        }
    } else {
        fprintf(md, "\n(the per-layer summary of `/%s` is not in the expected layout)\n", a->path);
    }
    for (int k = 0; k < 2; k++) free(lab[k]);
    for (int c = 0; c < nc; c++) free(v[c]);
}

static void analyses(FILE *md, const rep_out *o, const olmoe_report_data *d) {
    for (int i = 0; i < d->n_analyses; i++) {
        const olmoe_report_analysis *a = &d->an[i];
        fprintf(md, "\n### %s: `%s`\n", a->analysis, a->name);
        if (!strcmp(a->analysis, "coactivation") || !strcmp(a->analysis, "flow")) {
            static const char *const c[] = {"mean_selected", "max_cond_mean", "indep_max_mean", "lift"};
            static const char *const hd[] = {"experts/token", "max P(j \\| i) (mean over i)", "same, independent", "lift"};
            analysis_table(md, d, a, c, hd, 4, !strcmp(a->analysis, "flow"));
        } else if (!strcmp(a->analysis, "specialization_group")) {
            static const char *const c[] = {"nmi", "max_lift_mean", "mean_selected"};
            static const char *const hd[] = {"NMI(expert; group)", "max lift (mean over experts)", "experts/token"};
            analysis_table(md, d, a, c, hd, 3, 0);
        } else if (!strcmp(a->analysis, "specialization_token")) {
            static const char *const c[] = {"mean_top_share", "mean_top_share_ids", "uniform_share"};
            static const char *const hd[] = {"top-expert share (by occurrences)", "top-expert share (by id)",
                                             "uniform"};
            analysis_table(md, d, a, c, hd, 3, 0);
        } else if (!strcmp(a->analysis, "compare")) {
            static const char *const c[] = {"overlap", "top1_agree", "exact_agree", "spearman"};
            static const char *const hd[] = {"overlap", "same first expert", "same set", "Spearman ρ"};
            analysis_table(md, d, a, c, hd, 4, 0);
        }
        for (int f = 0; f < o->n_figs; f++)
            if (o->figs[f].ok && !strcmp(o->figs[f].key, a->path))
                fprintf(md, "\n![%s](%s.png)\n", o->figs[f].title, o->figs[f].name);
    }
}

/* a figure of the section was drawn (or tried) */
static int has_section(const rep_out *o, const char *section) {
    for (int i = 0; i < o->n_figs; i++)
        if (!strcmp(o->figs[i].section, section)) return 1;
    return 0;
}

/* the title, what wrote it, and the provenance */
static void md_header(FILE *md, const olmoe_report_data *d, const olmoe_report_opts *opts) {
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    const char *model = d->trace ? olmoe_trace_info_of(d->trace)->meta.model_dir : "";
    fprintf(md, "# Routing report%s%s%s\n\n", *model ? ": `" : "", model, *model ? "`" : "");
    fprintf(md, "Written by olmoe-report %s on %s. Every number below is read from the HDF5 results; "
                "each figure's data (`.dat`) and gnuplot script (`.gp`) are next to it: `gnuplot NAME.gp` "
                "in this directory redraws it.\n\n", OLMOE_VERSION, when);
    provenance(md, d, opts);
}

/* the policies' tables, error bars and headroom */
static int md_policies(FILE *md, const olmoe_report_data *d) {
    if (!d->n_policies) return 0;
    fprintf(md, "\n## Policies\n\nBaseline: `%s`", d->baseline_id);
    if (isfinite(d->baseline_ppl)) fprintf(md, ", perplexity %.4f", d->baseline_ppl);
    fprintf(md, ". Δ vs baseline = perplexity / baseline perplexity − 1; compute saved = 1 − experts per "
                "token / %d (expert FLOPs scale with the number of experts).\n", d->top_k);
    quality_tables(md, d);
    return rep_paper_sections(md, d);
}

/* the Pareto front of kind K, as in the quality figure */
static void md_pareto(FILE *md, const olmoe_report_data *d, int K) {
    int n = d->n_policies;
    double *x = xmalloc(((size_t)n + 1) * sizeof *x), *y = xmalloc(((size_t)n + 1) * sizeof *y);
    int *fr = xcalloc((size_t)n + 1, sizeof *fr);
    for (int i = 0; i < n; i++) {
        x[i] = d->pol[i].res[K].present ? d->pol[i].res[K].mean_k : NAN;
        y[i] = d->pol[i].res[K].present ? d->pol[i].res[K].perplexity : NAN;
    }
    rep_pareto(x, y, n, fr);
    fprintf(md, "\nPareto front (%s: no other policy has fewer experts per token and a lower perplexity):",
            olmoe_report_kind_names[K]);
    for (int i = 0; i < n; i++)
        if (fr[i]) fprintf(md, " `%s`", d->pol[i].id);
    fprintf(md, "\n");
    free(x);
    free(y);
    free(fr);
}

/* quality against compute: the figure and the Pareto front, or why there are none */
static void md_quality(FILE *md, const rep_out *o, const olmoe_report_data *d) {
    int n_replay = count_kind(d, OLMOE_REPORT_REPLAY), n_exact = count_kind(d, OLMOE_REPORT_EXACT);
    if (n_replay + n_exact) {
        fprintf(md, "\n## Quality vs compute\n");
        figures(md, o, "quality");
        md_pareto(md, d, n_replay ? OLMOE_REPORT_REPLAY : OLMOE_REPORT_EXACT);
    } else if (count_kind(d, OLMOE_REPORT_STATS)) {
        fprintf(md, "\n## Quality vs compute\n\nNo perplexities in the inputs, only routing statistics "
                    "(`olmoe-replay --mode stats`): replay the policies (`olmoe-replay`, or `--exact`) and "
                    "store the results to draw quality against compute.\n");
    }
}

/* a section of figures only, when it has any */
static void md_figure_section(FILE *md, const rep_out *o, const char *section, const char *heading) {
    if (!has_section(o, section)) return;
    fprintf(md, "\n## %s\n", heading);
    figures(md, o, section);
}

static void md_experts(FILE *md, const rep_out *o, const olmoe_report_data *d, const olmoe_report_opts *opts) {
    if (!d->n_selected) return;
    fprintf(md, "\n## Experts per token\n\nPolicies drawn: %d (%s).\n", d->n_selected,
            opts->n_policy_args ? "--policy" : "the seed set present, else the first ones");
    figures(md, o, "experts");
    layer_tables(md, d);
}

static void md_fidelity(FILE *md, const rep_out *o, const olmoe_report_data *d) {
    if (!has_section(o, "fidelity") && !d->val.present) return;
    fprintf(md, "\n## Replay fidelity\n");
    fidelity_table(md, &d->val);
    for (int i = 0; i < d->n_more_val; i++) fidelity_table(md, &d->more_val[i]);
    figures(md, o, "fidelity");
}

static void md_groups(FILE *md, const olmoe_report_data *d) {
    int any_groups = 0;
    for (int i = 0; i < d->n_policies; i++)
        for (int k = 0; k < OLMOE_REPORT_KIND_COUNT; k++) any_groups |= d->pol[i].selected && d->pol[i].res[k].n_groups > 0;
    if (!any_groups) return;
    fprintf(md, "\n## Document groups\n");
    group_tables(md, d);
}

/* the list of scripts, images and data files */
static void md_files(FILE *md, const rep_out *o) {
    fprintf(md, "\n## Files\n\nFigures (script → images):\n\n");
    for (int i = 0; i < o->n_figs; i++)
        fprintf(md, "- `%s.gp` → `%s.png`%s%s\n", o->figs[i].name, o->figs[i].name,
                (o->formats & REP_SVG) ? ", `.svg`" : "", (o->formats & REP_PDF) ? ", `.pdf`" : "");
    fprintf(md, "\nData (plain text, whitespace-separated, `#` comments name the columns; blocks "
                "separated by two blank lines are gnuplot's `index N`):");
    for (int f = 0; f < o->n_files; f++) {
        size_t sl = strlen(o->files[f]);
        if (sl > 4 && !strcmp(o->files[f] + sl - 4, ".dat")) fprintf(md, " `%s`", o->files[f]);
    }
    fprintf(md, "\n");
}

int rep_write_md(rep_out *o, const olmoe_report_data *d, const olmoe_report_opts *opts) {
    FILE *md = rep_file(o, "report.md");
    if (!md) return -1;
    md_header(md, d, opts);
    if (md_policies(md, d) != 0) goto fail;
    md_quality(md, o, d);
    md_figure_section(md, o, "sweep", "Alpha sweeps");
    md_experts(md, o, d, opts);
    md_figure_section(md, o, "load", "Expert load");
    md_fidelity(md, o, d);
    md_groups(md, d);
    if (d->has_null) {
        fprintf(md, "\n## Null distributions\n");
        null_table(md, d);
        figures(md, o, "null");
    }
    if (d->n_analyses) {
        fprintf(md, "\n## Routing analyses\n");
        analyses(md, o, d);
    }
    if (d->n_matches) {
        fprintf(md, "\n## Matched compute\n");
        if (rep_match_table(md, d) != 0) goto fail;
        figures(md, o, "match");
    }
    md_files(md, o);
    return rep_close(md, "report.md");
fail:
    fclose(md);
    return -1;
}
