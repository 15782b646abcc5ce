#!/bin/sh
# check_layers.sh SOURCE_DIR - the dependency arrows of DESIGN.md hold:
#   daemon -> store -> proto,  client -> proto.
# Fails when a lower layer includes a higher one's header, when store/ or
# proto/ include ZeroMQ, or when client/ includes daemon or store code;
# when two modules include each other's headers, directly or round a
# longer circle (a module is a folder's X.c, X.h and its private X_int.h);
# and when a source file is over LAYERS_MAX_LINES (800) lines.
set -eu
src=${1:?usage: check_layers.sh SOURCE_DIR}
cd "$src"
status=0

headers_of() { # the project headers a folder's own files define
    for f in "$@"; do basename "$f"; done
}
daemon_h=$(headers_of daemon/*.h)
store_h=$(headers_of store/*.h)
client_h=$(headers_of client/*.h client/cli/*.h)

refuse() { # refuse FOLDER-GLOB WHAT HEADER...
    files=$1; what=$2; shift 2
    for h in "$@"; do
        hits=$(grep -ln "#include [\"<]$h[\">]" $files 2>/dev/null || true)
        if [ -n "$hits" ]; then
            echo "layering: $what includes $h:" $hits
            status=1
        fi
    done
}

refuse "proto/*.c proto/*.h" "proto/" $daemon_h $store_h $client_h zmq.h sqlite3.h
refuse "store/*.c store/*.h" "store/" $daemon_h $client_h zmq.h
refuse "client/*.c client/*.h client/cli/*.c client/cli/*.h" "client/" $daemon_h $store_h

[ $status -eq 0 ] && echo "layering: daemon -> store -> proto, client -> proto: ok"

# Circles: one edge per #include of a project header from another module.
sources=$(ls daemon/*.[ch] store/*.[ch] proto/*.[ch] client/*.[ch] client/cli/*.[ch] 2>/dev/null)
circles=$(
    for f in $sources; do
        dir=${f%/*}
        grep -o '^#include "[^"]*"' "$f" | sed 's/^#include "\(.*\)"$/\1/' |
            while read -r h; do
                if [ -f "$dir/$h" ]; then echo "$f $dir/$h"; fi
            done
    done | awk '
        function module(path) { sub(/\.[ch]$/, "", path); sub(/_int$/, "", path); return path }
        { a = module($1); b = module($2); if (a != b && !((a, b) in seen)) { seen[a, b] = 1; out[a] = out[a] " " b } }
        function visit(m, trail,    n, i, next_m, list) {
            if (state[m] == 2) return
            if (state[m] == 1) { print "circle:" trail; found = 1; return }
            state[m] = 1
            n = split(out[m], list, " ")
            for (i = 1; i <= n; i++) { next_m = list[i]; visit(next_m, trail " -> " next_m) }
            state[m] = 2
        }
        END { for (m in out) visit(m, " " m) }'
)
if [ -n "$circles" ]; then
    echo "layering: modules that include each other's headers:"
    echo "$circles"
    status=1
else
    echo "layering: no include circle between modules: ok"
fi

# Size: a newcomer reads a file whole.
max=${LAYERS_MAX_LINES:-800}
long=$(wc -l $sources | awk -v max="$max" '$2 != "total" && $1 > max { print "  " $2 ": " $1 " lines" }')
if [ -n "$long" ]; then
    echo "layering: source files over $max lines:"
    echo "$long"
    status=1
else
    echo "layering: every source file is at most $max lines: ok"
fi
exit $status
