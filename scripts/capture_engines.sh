#!/usr/bin/env bash
# Traces of decode programs gapprof did not write, none marking its steps (traces/README.md lists what each made):
#   bash scripts/capture_engines.sh GPT_FAST_DIR OUT_DIR PREFIX WHICH...
# WHICH: gpt-fast-compile, gpt-fast-eager (under nsys), gpt-fast-compile-torch, gpt-fast-eager-torch (under
# torch.profiler), hf-generate (transformers' generate(), under nsys).
# Each program times its own decode per token unprofiled first, then runs the generate() the profiler records
# (nsys keeps only the cudaProfilerStart/Stop window). Needs nsys on PATH (or GAPPROF_NSYS) and a CUDA GPU.
set -euo pipefail
gpt_fast=$1 out=$2 prefix=$3
shift 3
nsys=${GAPPROF_NSYS:-nsys}
under_nsys() {  # NAME COMMAND...: the trace as NAME.sqlite.xz, the program's output as NAME.log
  local name=$1
  shift
  "$nsys" profile -t cuda,nvtx -s none --cpuctxsw=none --cuda-graph-trace=node --capture-range=cudaProfilerApi \
    --capture-range-end=stop --force-overwrite=true -o "/tmp/$name" "$@" 2>&1 | tee "$out/$name.log"
  "$nsys" export --type sqlite --force-overwrite=true --output "/tmp/$name.sqlite" "/tmp/$name.nsys-rep" >/dev/null
  xz -T0 -6 -c "/tmp/$name.sqlite" >"$out/$name.sqlite.xz"
}
for which in "$@"; do
  case $which in
    gpt-fast-compile) under_nsys "$prefix-$which" python3 examples/gpt_fast_decode.py --gpt-fast "$gpt_fast" --compile ;;
    gpt-fast-eager) under_nsys "$prefix-$which" python3 examples/gpt_fast_decode.py --gpt-fast "$gpt_fast" ;;
    gpt-fast-compile-torch | gpt-fast-eager-torch)  # eager: 16 tokens, its torch.profiler trace is 20x a compiled one's
      flags=$([ "$which" = gpt-fast-compile-torch ] && echo --compile || echo --new-tokens 16)
      python3 examples/gpt_fast_decode.py --gpt-fast "$gpt_fast" $flags --torch-trace "/tmp/$prefix-$which.json" \
        2>&1 | tee "$out/$prefix-$which.log"
      gzip -6 -c "/tmp/$prefix-$which.json" >"$out/$prefix-$which.json.gz" ;;
    hf-generate)
      under_nsys "$prefix-hf-generate" python3 examples/generate.py --new-tokens 32 --repeat 3 ;;
    *) echo "unknown: $which" >&2; exit 2 ;;
  esac
done
