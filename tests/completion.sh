#!/bin/bash
# completion.sh SOURCE_DIR BINDIR - the bash completion of parksync(1)
# completes what the installed binary offers: commands, each command's
# options, record kinds. Needs Debian's bash-completion.
set -u
src=${1:?usage: completion.sh SOURCE_DIR BINDIR}
bindir=${2:?usage: completion.sh SOURCE_DIR BINDIR}
lib=/usr/share/bash-completion/bash_completion
[ -r "$lib" ] || { echo "completion: $lib missing (apt install bash-completion)"; exit 1; }
# shellcheck source=/dev/null
. "$lib"
# shellcheck source=/dev/null
. "$src/client/completion/parksync"
PATH="$bindir:$PATH"
status=0

# complete LINE: COMPREPLY for the cursor at the end of LINE
complete_line() {
    COMP_LINE=$1
    COMP_POINT=${#1}
    read -r -a COMP_WORDS <<<"$1"
    [[ $1 == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _parksync parksync "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
}

# expect LINE WORD...: every WORD is offered
expect() {
    local line=$1 want got
    shift
    complete_line "$line"
    got=" ${COMPREPLY[*]} "
    for want in "$@"; do
        if [[ $got != *" $want "* ]]; then
            echo "completion: '$line' offers [${COMPREPLY[*]}], not $want"
            status=1
        fi
    done
}

expect "parksync " push snapshot watch status check backup reload digest
expect "parksync di" digest
expect "parksync digest --" --json --control --timeout
expect "parksync pu" push
expect "parksync ch" check
expect "parksync push --ou" --outbox
expect "parksync push --" --producer --timeout --force --server-key
expect "parksync status --" --json --producers-after
expect "parksync snapshot --kind t" trade
expect "parksync snapshot --kind " park resident trade country summary
expect "parksync " context
expect "parksync push --" --format --kind
expect "parksync push --format " csv jsonl
expect "parksync push --format csv --kind " park resident trade country delete
expect "parksync snapshot --format " csv table jsonl
expect "parksync context " list show use
expect "parksync status --con" --context --control
# contexts come from `parksync context list`, in a client.conf of our own
XDG_CONFIG_HOME=$(mktemp -d)
export XDG_CONFIG_HOME
trap 'rm -rf "$XDG_CONFIG_HOME"' EXIT
mkdir -p "$XDG_CONFIG_HOME/parksync"
printf 'current = az-prod\n[context az-prod]\nquery = tcp://127.0.0.1:7103\n[context tj-test]\nquery = tcp://127.0.0.1:7203\n' \
    >"$XDG_CONFIG_HOME/parksync/client.conf"
expect "parksync context use " az-prod tj-test
expect "parksync --context a" az-prod
expect "parksync --context az-prod st" status
expect "parksync snapshot --context t" tj-test
[ $status -eq 0 ] && echo "completion: commands, options, kinds and contexts: ok"
exit $status
