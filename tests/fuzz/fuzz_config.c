/* fuzz_config.c: config.json text -> olmoe_config_parse. On success the
 * config must hold what capture/config.c promises the engine (positive sizes,
 * k <= E, heads a multiple of the KV heads, an even head_dim, finite eps and
 * theta), since the forward pass trusts these numbers without checking. */
#include "fuzz.h"
#include "model.h"

#include <math.h>

FUZZ_TARGET(config) {
    const char *name = "fuzz-model/config.json";
    olmoe_config c;
    if (olmoe_config_parse((const char *)data, size, name, &c) != 0) {
        FUZZ_ERROR_NAMES(name);
        return 0;
    }
    FUZZ_ASSERT(c.vocab_size >= 2 && c.hidden_size >= 1 && c.intermediate_size >= 1 &&
                    c.num_hidden_layers >= 1 && c.num_attention_heads >= 1,
                "sizes V %d D %d I %d L %d H %d", c.vocab_size, c.hidden_size,
                c.intermediate_size, c.num_hidden_layers, c.num_attention_heads);
    FUZZ_ASSERT(c.num_experts >= 1 && c.num_experts_per_tok >= 1 &&
                    c.num_experts_per_tok <= c.num_experts,
                "k %d of E %d", c.num_experts_per_tok, c.num_experts);
    FUZZ_ASSERT(c.num_key_value_heads >= 1 && c.num_attention_heads % c.num_key_value_heads == 0,
                "heads %d kv %d", c.num_attention_heads, c.num_key_value_heads);
    FUZZ_ASSERT(c.head_dim >= 2 && c.head_dim % 2 == 0, "head_dim %d", c.head_dim);
    FUZZ_ASSERT(isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0, "eps %g", c.rms_norm_eps);
    FUZZ_ASSERT(isfinite(c.rope_theta) && c.rope_theta > 1, "theta %g", c.rope_theta);
    FUZZ_ASSERT(!c.has_clip_qkv || (isfinite(c.clip_qkv) && c.clip_qkv > 0), "clip %g",
                c.clip_qkv);
    FUZZ_ASSERT(c.max_position_embeddings >= 0, "max positions %ld", c.max_position_embeddings);
    FUZZ_ASSERT(c.eos_token_id >= -1 && c.pad_token_id >= -1, "eos %ld pad %ld", c.eos_token_id,
                c.pad_token_id);
    FUZZ_ASSERT(c.json && strlen(c.json) <= size, "json copy");
    olmoe_config_free(&c);
    return 0;
}
