#!/usr/bin/env bash
# Embeds mail templates (<name>.txt with a "Subject:" first line, and
# <name>.html) into a C file: an array of {name, subject, text, html}.
#   gen-templates.sh DIR > out.c
set -euo pipefail
dir=$1
cstr() { # file -> a C string literal, one source line per input line
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$1"
}
echo "/* Generated from $dir by scripts/gen-templates.sh; do not edit. */"
echo '#include "jobs_templates.h"'
echo "const jobs_template_t jobs_templates[] = {"
for txt in "$dir"/*.txt; do
  name=$(basename "$txt" .txt)
  html="$dir/$name.html"
  [[ -f $html ]] || { echo "missing $html" >&2; exit 1; }
  subject=$(head -n 1 "$txt")
  [[ $subject == "Subject: "* ]] || { echo "$txt: first line must be 'Subject: ...'" >&2; exit 1; }
  subject=${subject#Subject: }
  echo "  {\"$name\", \"${subject//\"/\\\"}\","
  tail -n +3 "$txt" > "${TMPDIR:-/tmp}/gen-templates.$$"
  cstr "${TMPDIR:-/tmp}/gen-templates.$$"
  echo "    ,"
  cstr "$html"
  echo "  },"
done
rm -f "${TMPDIR:-/tmp}/gen-templates.$$"
echo "};"
echo "const size_t jobs_templates_len = sizeof(jobs_templates) / sizeof(jobs_templates[0]);"
