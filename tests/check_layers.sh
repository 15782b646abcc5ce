#!/bin/sh
# check_layers.sh SOURCE_DIR - the dependency arrows of DESIGN.md hold:
#   daemon -> store -> proto,  client -> proto.
# Fails when a lower layer includes a higher one's header, when store/ or
# proto/ include ZeroMQ, or when client/ includes daemon or store code.
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
exit $status
