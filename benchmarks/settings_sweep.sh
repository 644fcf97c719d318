#!/usr/bin/env bash
# Training settings side by side: one `rpl train` per setting and seed, all at once, one per
# core (the lent 16-core machine's sweeps in results/EXPERIMENTS.md: "RPL against Scratch on the lent
# machine (stop 26)", "(stop 27)" and "fewer updates per step (stop 27)" for mbrl_pusher, and
# ComplexHook's goal-consistent HER).
#
#   bash benchmarks/settings_sweep.sh OUT_DIR "0 1 2" 120000 [STOP_AFTER_S]
#
# Each setting below names its task and its --set overrides of that task's shipped config
# (for the README's runs they give back the runs' config.json exactly); each run goes to
# OUT_DIR/<setting>_s<seed> with its log beside it. STOP_AFTER_S stops every run with SIGINT
# after that many seconds (a stopped run keeps its metrics and checkpoint). Then it prints
# each run's periodic evaluations (return where the task has one, else success). Exit 1 if
# a run failed. SETTINGS="a b ..." picks the settings (default: stop 26's five pusher ones);
# DRY_RUN=1 prints the `rpl train` commands instead of running them.
# Then:
#   python benchmarks/training_milestones.py OUT_DIR/*/ [--metric return --levels ...] --out M
#   rpl plot OUT_DIR/*/ [--metric return] --out curves.png
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 OUT_DIR SEEDS STEPS [STOP_AFTER_S]" >&2
  exit 2
fi
out=$1 seeds=$2 steps=$3 stop_after=${4:-0}
for number in $seeds "$steps" "$stop_after"; do
  if ! [[ $number =~ ^[0-9]+$ ]]; then
    echo "$0: '$number' is not a whole number (seeds, steps and seconds are)" >&2
    exit 2
  fi
done
if [ -e "$out" ]; then
  echo "$0: $out exists already; give a new directory (nothing is overwritten)" >&2
  exit 2
fi
rpl=${RPL:-rpl}
command -v "$rpl" > /dev/null || rpl=.venv/bin/rpl
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cache=cache_file=results/pets_v2/cached_pets_pusher_v2.npz
pusher="--task mbrl_pusher --set eval_interval=7500"
# (The stop 26-27 runs predate base_input, shipped since stop 28: off for them.)
v2="$pusher --controller-param $cache --set burn_in_beta=0 --set base_input=false"
exec1="--set residual_scale=1 --set critic_action=executed"
warm="$exec1 --set actor_warmup_updates=2500" # the shipped setting since stop 26
scratch="$pusher --algo scratch --set actor_warmup_updates=0 --set burn_in_beta=1 --set residual_scale=4"
# The hooks' early phase: evaluations every 10k steps, 20 episodes each.
hook="--set eval_interval=10000 --set eval_episodes=20"
declare -A settings=(
  [exec_noburn]="$v2 $exec1 --set actor_warmup_updates=0"
  [exec_noburn_warm]="$v2 $warm"
  [exec_noburn_warm_scale2]="$v2 $warm --set residual_scale=2"
  [resid_noburn_warm]="$v2 $warm --set critic_action=residual"
  [knn2_warm]="$v2 $warm --controller-param neighbours=2"
  [knn4_warm]="$v2 $warm --controller-param neighbours=4"
  [exec_noburn_warm_l2low]="$v2 $warm --set action_l2=0.1"
  [exec_noburn_warm_utd005]="$v2 $exec1 --set actor_warmup_updates=500 --set updates_per_env_step=0.05"
  [base_input]="$pusher --set residual_scale=1" # stop 28: base_input on the v2 default
  [base_input_scale2]="$pusher --set residual_scale=2" # the same at scale 2: shipped since
  [scratch]="$scratch"
  [scratch_utd005]="$scratch --set updates_per_env_step=0.05"
  [complex_hook_gc_her]="--task complex_hook $hook --goal-consistent-her"
  [complex_hook_plain_her]="--task complex_hook $hook --no-goal-consistent-her"
)
chosen=${SETTINGS:-exec_noburn exec_noburn_warm exec_noburn_warm_scale2 resid_noburn_warm scratch}
for name in $chosen; do
  if [ -z "${settings[$name]+set}" ]; then
    echo "$0: no setting '$name' (there are: ${!settings[*]})" >&2
    exit 2
  fi
done
if [ "${DRY_RUN:-0}" != 0 ]; then # print the runs' commands, run nothing
  for seed in $seeds; do
    for name in $chosen; do
      # shellcheck disable=SC2086  # the settings are words
      echo rpl train --seed "$seed" --steps "$steps" --no-progress ${settings[$name]} \
        --out "$out/${name}_s$seed"
    done
  done
  exit 0
fi
mkdir -p "$out"
pids=()
for seed in $seeds; do
  for name in $chosen; do
    limit=()
    # SIGINT: the run saves a checkpoint and stops; SIGKILL 120 s later if it hangs there.
    [ "$stop_after" -gt 0 ] && limit=(timeout -k 120 -s INT "$stop_after")
    # shellcheck disable=SC2086  # the settings are words
    "${limit[@]}" "$rpl" train --seed "$seed" --steps "$steps" --no-progress ${settings[$name]} \
      --out "$out/${name}_s$seed" > "$out/${name}_s$seed.log" 2>&1 &
    pids+=($!)
  done
done
echo "$0: ${#pids[@]} runs started in $out"
failed=0 stopped=0
for pid in "${pids[@]}"; do
  wait "$pid"
  rc=$?
  if [ "$rc" -eq 124 ] && [ "$stop_after" -gt 0 ]; then
    stopped=$((stopped + 1)) # timeout's status: stopped with a checkpoint, as asked
  elif [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
  fi
done
[ "$stopped" -gt 0 ] && echo "$0: $stopped run(s) stopped after ${stop_after} s (--resume continues one)"
for run in "$out"/*/; do
  [ -f "$run/metrics.csv" ] || continue # stopped before its first row
  printf '%s ' "$(basename "$run")"
  awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) {if ($i == "eval/return") r = i
                                                 if ($i == "eval/success_rate") s = i}
                     c = r ? r : s}
           NR > 1 && c && $c != "" {printf(r ? "%gk:%.1f " : "%gk:%.2f ", $1 / 1000, $c)}' "$run/metrics.csv"
  echo
done
if [ "$failed" -gt 0 ]; then
  echo "$0: $failed run(s) failed; see $out/*.log" >&2
  exit 1
fi
