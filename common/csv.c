/* csv.c: see common.h. */
#include "common.h"

#include <string.h>

void olmoe_csv_quoted(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}

void olmoe_csv_field(FILE *f, const char *s) { olmoe_csv_quoted(f, s, strlen(s)); }
