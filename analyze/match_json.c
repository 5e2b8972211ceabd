/* match_json.c: the matched-compute table as JSON (olmoe-replay --match-k
 * --json): the run's settings, then one object per row with the target, the
 * mean k the calibration reached and the mean k the scoring run measured
 * (scored_k) side by side. NaN is written as null. */
#include "common.h"
#include "match.h"

#include <jansson.h>
#include <math.h>

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *row_json(const olmoe_match_row *r) {
    json_t *o = json_object();
    json_object_set_new(o, "kind", olmoe_json_str(r->kind));
    json_object_set_new(o, "target_k", num(r->target_k));
    json_object_set_new(o, "family", olmoe_json_str(r->family));
    json_object_set_new(o, "param_name", olmoe_json_str(r->param_name));
    json_object_set_new(o, "param_value", num(r->param_value));
    json_object_set_new(o, "policy", olmoe_json_str(r->policy));
    json_object_set_new(o, "achieved_k", num(r->achieved_k));
    json_object_set_new(o, "reached", json_boolean(r->reached));
    json_object_set_new(o, "scored_k", num(r->scored_k));
    json_object_set_new(o, "perplexity", num(r->perplexity));
    json_object_set_new(o, "accuracy", num(r->accuracy));
    json_object_set_new(o, "delta_vs_topk", num(r->delta_vs_topk));
    json_object_set_new(o, "rel_vs_topk", num(r->rel_vs_topk));
    json_object_set_new(o, "note", olmoe_json_str(r->note));
    return o;
}

int olmoe_match_write_json(const olmoe_match_table *t, const char *path) {
    json_t *root = json_object(), *rows = json_array(), *targets = json_array();
    json_object_set_new(root, "trace", olmoe_json_str(t->trace));
    json_object_set_new(root, "calibration", olmoe_json_str(t->calibration));
    json_object_set_new(root, "calibrated_on", olmoe_json_str(t->calibrated_on ? t->calibrated_on : "logits"));
    json_object_set_new(root, "calibration_tokens", json_integer(t->calib_rows));
    json_object_set_new(root, "tolerance", num(t->tol));
    json_object_set_new(root, "default_max_k", json_integer(t->default_max_k));
    json_object_set_new(root, "command", olmoe_json_str(t->command ? t->command : ""));
    for (int j = 0; j < t->n_targets; j++) json_array_append_new(targets, num(t->targets[j]));
    json_object_set_new(root, "targets", targets);
    for (int i = 0; i < t->n; i++) json_array_append_new(rows, row_json(&t->rows[i]));
    json_object_set_new(root, "rows", rows);
    int rc = olmoe_json_write(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(10), path);
    json_decref(root);
    return rc;
}
