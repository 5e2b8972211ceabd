/* tokenizer_bpe.c: the BPE model on one pre-token, as HF's Word::merge_all.
 *
 * Symbols form a linked list over an array; a binary min-heap holds candidate
 * merges ordered by (rank, position), so a word of n bytes costs O(n log n),
 * not O(n^2). Entries go stale when a neighbour merges first; a popped entry
 * is used only if the pair now at its position still merges into the same id
 * (HF's exact test, which decides ties the same way). Results are cached per
 * word: natural text repeats its words.
 */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* words longer than this are not cached (they are rare and would crowd the
 * arena); the cache is emptied when full rather than evicting one by one */
#define CACHE_MAX_WORD 256
#define CACHE_SLOTS (1u << 16)
#define CACHE_ARENA (8u << 20)

typedef struct {
    uint32_t rank, pos;
    int32_t id;
} merge_entry;

typedef struct {
    int32_t *c;        // [cap] symbol id
    int32_t *prev;     // [cap]
    int32_t *next;     // [cap]
    uint32_t *len;     // [cap] bytes covered, 0 = merged away
    size_t n, cap;
    merge_entry *heap; // [heap_cap]
    size_t heap_n, heap_cap;
    char *mapped;      // [mapped_cap] the byte-level string (ignore_merges)
    size_t mapped_cap;
} bpe_scratch;

/* ---- cache ---- */

void tok_cache_init(tok_cache *c) {
    memset(c, 0, sizeof *c);
    c->cap = CACHE_SLOTS;
    c->hash = xcalloc(c->cap, sizeof *c->hash);
    c->key_off = xmalloc(c->cap * sizeof *c->key_off);
    c->key_len = xmalloc(c->cap * sizeof *c->key_len);
    c->ids_off = xmalloc(c->cap * sizeof *c->ids_off);
    c->ids_len = xmalloc(c->cap * sizeof *c->ids_len);
}

void tok_cache_free(tok_cache *c) {
    free(c->hash);
    free(c->key_off);
    free(c->key_len);
    free(c->ids_off);
    free(c->ids_len);
    free(c->keys);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

static void cache_clear(tok_cache *c) {
    memset(c->hash, 0, c->cap * sizeof *c->hash);
    c->n = c->keys_n = c->ids_n = 0;
}

/* slot holding the word, or the empty slot where it would go */
static size_t cache_slot(const tok_cache *c, const uint8_t *w, size_t n, uint64_t h) {
    size_t mask = c->cap - 1, i = (size_t)h & mask;
    while (c->hash[i]) {
        if (c->hash[i] == h && c->key_len[i] == n && memcmp(c->keys + c->key_off[i], w, n) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

static void cache_put(tok_cache *c, size_t slot, uint64_t h, const uint8_t *w, size_t n,
                      const int32_t *ids, size_t k) {
    if (c->n * 2 >= c->cap || c->keys_n + n > CACHE_ARENA || c->ids_n + k > CACHE_ARENA) {
        cache_clear(c);
        slot = cache_slot(c, w, n, h);
    }
    if (c->keys_n + n > c->keys_cap) {
        c->keys_cap = c->keys_cap ? c->keys_cap * 2 : 1 << 16;
        c->keys = xrealloc(c->keys, c->keys_cap);
    }
    if (c->ids_n + k > c->ids_cap) {
        c->ids_cap = c->ids_cap ? c->ids_cap * 2 : 1 << 14;
        c->ids = xrealloc(c->ids, c->ids_cap * sizeof *c->ids);
    }
    memcpy(c->keys + c->keys_n, w, n);
    if (k) memcpy(c->ids + c->ids_n, ids, k * sizeof *ids);
    c->hash[slot] = h;
    c->key_off[slot] = (uint32_t)c->keys_n;
    c->key_len[slot] = (uint32_t)n;
    c->ids_off[slot] = (uint32_t)c->ids_n;
    c->ids_len[slot] = (uint32_t)k;
    c->keys_n += n;
    c->ids_n += k;
    c->n++;
}

/* ---- the heap: smallest (rank, pos) on top ---- */

static int entry_less(const merge_entry *a, const merge_entry *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(bpe_scratch *s, uint32_t rank, uint32_t pos, int32_t id) {
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 64;
        s->heap = xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    merge_entry e = {rank, pos, id};
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!entry_less(&e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static merge_entry heap_pop(bpe_scratch *s) {
    merge_entry top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const merge_entry *best = &last;
        if (l < n && entry_less(&s->heap[l], best)) m = l, best = &s->heap[l];
        if (l + 1 < n && entry_less(&s->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* ---- building the word ---- */

static void sym_add(bpe_scratch *s, int32_t id, uint32_t len) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->c = xrealloc(s->c, s->cap * sizeof *s->c);
        s->prev = xrealloc(s->prev, s->cap * sizeof *s->prev);
        s->next = xrealloc(s->next, s->cap * sizeof *s->next);
        s->len = xrealloc(s->len, s->cap * sizeof *s->len);
    }
    size_t i = s->n++;
    s->c[i] = id;
    s->len[i] = len;
    s->next[i] = -1;
    s->prev[i] = (int32_t)i - 1;
    if (i > 0) s->next[i - 1] = (int32_t)i;
}

/* HF's merge_word before the merges: one symbol per character of the
 * byte-level string, i.e. per byte. A character missing from the vocab goes
 * to byte fallback (<0xXX> tokens for the character's UTF-8), else to the unk
 * token (fused with a preceding unk when fuse_unk), else is dropped. */
static void initial_symbols(olmoe_tokenizer *t, bpe_scratch *s, const uint8_t *w, size_t n) {
    int32_t unk = -1;
    uint32_t unk_len = 0;
    s->n = 0;
    for (size_t i = 0, step; i < n; i += step) {
        /* a character: one byte through GPT-2's table, or (SentencePiece
         * style) a whole UTF-8 character as it is */
        char ch[4], code[8];
        int k;
        int32_t id;
        if (t->spm) {
            uint32_t cp;
            step = (size_t)tok_utf8_get(w + i, n - i, &cp);
            k = (int)step;
            memcpy(ch, w + i, step);
            id = tok_strmap_get(&t->vocab, ch, step);
        } else {
            step = 1;
            k = tok_utf8_put(t->byte_char[w[i]], ch);
            id = t->byte_id[w[i]];
        }
        if (id >= 0) {
            if (unk >= 0) sym_add(s, unk, unk_len), unk = -1;
            sym_add(s, id, (uint32_t)step);
            continue;
        }
        if (t->byte_fallback) {
            int ok = 1;
            int32_t fb[4];
            for (int j = 0; j < k && ok; j++) {
                snprintf(code, sizeof code, "<0x%02X>", (unsigned)(uint8_t)ch[j]);
                fb[j] = tok_strmap_get(&t->vocab, code, strlen(code));
                ok = fb[j] >= 0;
            }
            if (ok) {
                /* as HF: a pending unk is not flushed here */
                for (int j = 0; j < k; j++) sym_add(s, fb[j], 1);
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (unk >= 0 && t->fuse_unk) {
                unk_len += (uint32_t)step;
            } else {
                if (unk >= 0) sym_add(s, unk, unk_len);
                unk = t->unk_id;
                unk_len = (uint32_t)step;
            }
        }
    }
    if (unk >= 0) sym_add(s, unk, unk_len);
}

static void merge_all(const olmoe_tokenizer *t, bpe_scratch *s) {
    uint32_t rank;
    int32_t id;
    s->heap_n = 0;
    for (size_t i = 0; i + 1 < s->n; i++)
        if (tok_pairmap_get(&t->merges, s->c[i], s->c[i + 1], &rank, &id))
            heap_push(s, rank, (uint32_t)i, id);
    while (s->heap_n) {
        merge_entry top = heap_pop(s);
        uint32_t p = top.pos;
        if (s->len[p] == 0) continue;
        int32_t nx = s->next[p];
        if (nx < 0) continue;
        /* stale entry: the pair here no longer merges into this id */
        if (!tok_pairmap_get(&t->merges, s->c[p], s->c[nx], &rank, &id) || id != top.id)
            continue;
        s->c[p] = top.id;
        s->len[p] += s->len[nx];
        s->next[p] = s->next[nx];
        s->len[nx] = 0;
        if (s->next[nx] >= 0) s->prev[s->next[nx]] = (int32_t)p;
        int32_t pv = s->prev[p];
        if (pv >= 0 && tok_pairmap_get(&t->merges, s->c[pv], s->c[p], &rank, &id))
            heap_push(s, rank, (uint32_t)pv, id);
        if (s->next[p] >= 0 && tok_pairmap_get(&t->merges, s->c[p], s->c[s->next[p]], &rank, &id))
            heap_push(s, rank, p, id);
    }
}

static bpe_scratch *scratch(olmoe_tokenizer *t) {
    if (!t->bpe_scratch) t->bpe_scratch = xcalloc(1, sizeof(bpe_scratch));
    return t->bpe_scratch;
}

void tok_bpe_free_scratch(olmoe_tokenizer *t) {
    bpe_scratch *s = t->bpe_scratch;
    if (!s) return;
    free(s->c);
    free(s->prev);
    free(s->next);
    free(s->len);
    free(s->heap);
    free(s->mapped);
    free(s);
    t->bpe_scratch = NULL;
}

static void encode_uncached(olmoe_tokenizer *t, const uint8_t *w, size_t n, olmoe_ids *out) {
    bpe_scratch *s = scratch(t);
    if (t->ignore_merges) {
        /* the whole word, as its byte-level string, when it is in the vocab */
        size_t need = n * 4 + 1;
        if (need > s->mapped_cap) {
            s->mapped_cap = need;
            s->mapped = xrealloc(s->mapped, need);
        }
        size_t m = 0;
        if (t->spm)
            memcpy(s->mapped, w, m = n);
        else
            for (size_t i = 0; i < n; i++) m += (size_t)tok_utf8_put(t->byte_char[w[i]], s->mapped + m);
        int32_t id = tok_strmap_get(&t->vocab, s->mapped, m);
        if (id >= 0) {
            olmoe_ids_push(out, id);
            return;
        }
    }
    initial_symbols(t, s, w, n);
    merge_all(t, s);
    for (int32_t i = s->n ? 0 : -1; i >= 0; i = s->next[i]) olmoe_ids_push(out, s->c[i]);
}

void tok_bpe_word(olmoe_tokenizer *t, const uint8_t *w, size_t n, olmoe_ids *out) {
    if (n == 0) return;
    if (n > CACHE_MAX_WORD) {
        encode_uncached(t, w, n, out);
        return;
    }
    tok_cache *c = &t->cache;
    uint64_t h = tok_hash(w, n) | 1; /* 0 marks an empty slot */
    size_t slot = cache_slot(c, w, n, h);
    if (c->hash[slot]) {
        uint32_t k = c->ids_len[slot];
        for (uint32_t i = 0; i < k; i++) olmoe_ids_push(out, c->ids[c->ids_off[slot] + i]);
        return;
    }
    size_t before = out->n;
    encode_uncached(t, w, n, out);
    /* a word can come out empty (bytes outside the vocab, no unk token) */
    cache_put(c, slot, h, w, n, out->n > before ? out->v + before : NULL, out->n - before);
}
