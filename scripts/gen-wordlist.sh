#!/usr/bin/env bash
# Turns a word list (one per line) into a C file holding a sorted,
# lower-cased, de-duplicated array for bsearch(3).
#   gen-wordlist.sh LIST SYMBOL > out.c
set -euo pipefail
list=$1 symbol=$2
echo "/* Generated from $list by scripts/gen-wordlist.sh; do not edit. */"
echo "#include <stddef.h>"
echo "extern const char *const ${symbol}[];"
echo "extern const size_t ${symbol}_len;"
echo "const char *const ${symbol}[] = {"
tr 'A-Z' 'a-z' < "$list" | LC_ALL=C sort -u | grep -v '^$' |
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/",/'
echo "};"
echo "const size_t ${symbol}_len = sizeof(${symbol}) / sizeof(${symbol}[0]);"
