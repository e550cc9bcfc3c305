#!/bin/sh
# Run one pipeline stage script: `sh stages/run.sh stages/NAME.py ARGS...` (every dvc.yaml command).
#
# Why not plain `python`: DVC runs a command in a shell with its own environment, so `.venv/bin/dvc repro`
# without the venv on PATH would find the system python, without iqabench (after DVC had deleted the
# stage's outputs). This uses the first Python that can import iqabench, in this order:
#   1. $IQABENCH_PYTHON, if set;
#   2. the interpreter of the nearest ancestor process, i.e. the Python running DVC (its argv[0], which
#      keeps the venv's path where /proc/PID/exe would give the base interpreter);
#   3. python3, then python, on PATH.
# When the script fails, it says how to get the last good results back: DVC removed this stage's outputs
# before running it, including the git-tracked files in reports/.

has_iqabench() {
    case "${1##*/}" in python*) ;; *) return 1 ;; esac  # never run a non-Python argv[0] with -c
    [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || return 1
    "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("iqabench") is None)' 2>/dev/null
}

ancestor_interpreters() {
    pid=$PPID
    while [ -n "$pid" ] && [ "$pid" -gt 1 ] 2>/dev/null; do
        if [ -r "/proc/$pid/cmdline" ]; then
            argv0=$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1)
            case "$argv0" in /*) ;; ?*) argv0="$(readlink "/proc/$pid/cwd")/$argv0" ;; esac
            pid=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d ' ' -f 2)
        else  # no /proc (macOS): ps gives the command line, split on spaces
            argv0=$(ps -o command= -p "$pid" 2>/dev/null | cut -d ' ' -f 1)
            pid=$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')
        fi
        [ -n "$argv0" ] && printf '%s\n' "$argv0"
    done
}

find_python() {
    if [ -n "${IQABENCH_PYTHON:-}" ]; then
        has_iqabench "$IQABENCH_PYTHON" || return 2
        printf '%s\n' "$IQABENCH_PYTHON"
        return 0
    fi
    IFS='
'  # one candidate per line: a venv path may hold spaces
    for candidate in $(ancestor_interpreters) python3 python; do
        if has_iqabench "$candidate"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

if [ $# -lt 1 ]; then
    echo "usage: sh stages/run.sh stages/NAME.py [ARGS...]" >&2
    exit 2
fi
python=$(find_python)
found=$?
if [ "$found" -eq 2 ]; then
    echo "iqabench: IQABENCH_PYTHON=$IQABENCH_PYTHON is not a Python that can import iqabench; point it at the" \
         "python of the environment where iqabench is installed, or unset it." >&2
    exit 1
elif [ "$found" -ne 0 ]; then
    echo "iqabench: no Python that can import iqabench was found (not the one running DVC, nor python3 or" \
         "python on PATH). Install it with \`pip install -e .\` in the environment that runs \`dvc\`, or set" \
         "IQABENCH_PYTHON to that environment's python." >&2
    exit 1
fi
"$python" "$@"
status=$?
if [ "$status" -ne 0 ]; then
    # The stages DVC checks out come from params.yaml (its foreach lists): a broken one restores less.
    echo "iqabench: stage ${DVC_STAGE:-$1} failed (exit $status). DVC removed its outputs before it ran;" \
         "to see the last good results again, run \`git checkout reports && dvc checkout\`" \
         "(committed reports, cached data; after \`git checkout params.yaml\` if the error is in params.yaml," \
         "e.g. from \`dvc exp run -S\`), then fix the error above and run \`dvc repro\`." >&2
fi
exit "$status"
