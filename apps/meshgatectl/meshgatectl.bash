# bash completion for meshgatectl (installed as share/bash-completion/completions/meshgatectl).
# Verbs, views and actions are listed here; tunnel and instance names come from the running gateway
# (`meshgatectl -j show tunnels|instances`), so they are always the live ones. Needs no bash-completion helpers.

_meshgatectl_names() {  # $1: tunnels | instances; $2: the --gateway given on the line, if any
  local ctl=${COMP_WORDS[0]:-meshgatectl}
  local -a gw=()
  [ -n "$2" ] && gw=(--gateway "$2")
  "$ctl" "${gw[@]}" -j show "$1" 2>/dev/null | sed -n 's/^    "name": "\([^"]*\)".*/\1/p'
}

_meshgatectl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local -a words=()
  local gateway="" i w
  COMPREPLY=()
  # The words before the cursor that are not options (nor an option's value).
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    case $w in
      --gateway) gateway=${COMP_WORDS[i+1]}; ((i++)) ;;
      --timeout-ms|--watch|--count|--format|--output|--deadline) ((i++)) ;;
      -*) ;;
      *) words+=("$w") ;;
    esac
  done
  case $prev in
    --gateway)
      COMPREPLY=($(compgen -W "$(ls /dev/shm 2>/dev/null | sed -n 's/^meshgate\.//p')" -- "$cur")); return ;;
    --format) COMPREPLY=($(compgen -W "prometheus openmetrics" -- "$cur")); return ;;
    --output) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --timeout-ms|--watch|--count|--deadline) return ;;
  esac
  if [[ $cur == -* ]]; then
    local opts="--gateway --json -j --timeout-ms --watch --count --help --version"
    [ "${words[0]}" = show ] && opts+=" --format --output"
    [ "${words[0]}" = tunnel ] && opts+=" --deadline"
    [ "${words[0]}" = instance ] && opts+=" --drain --deadline"
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return
  fi
  local list=""
  case ${#words[@]} in
    0) list="show tunnel instance mode clear ping reload help" ;;
    1)
      case ${words[0]} in
        show) list="gateway instances tunnels sa flows counters errors ports rates metrics" ;;
        tunnel) list=$(_meshgatectl_names tunnels "$gateway") ;;
        instance) list=$(_meshgatectl_names instances "$gateway") ;;
        mode) list="active-active active-standby" ;;
        clear) list="counters" ;;
      esac ;;
    2)
      case ${words[0]} in
        tunnel) list="down up drain weight" ;;
        instance) list="maintenance up reset" ;;
      esac ;;
  esac
  COMPREPLY=($(compgen -W "$list" -- "$cur"))
}
complete -F _meshgatectl meshgatectl
