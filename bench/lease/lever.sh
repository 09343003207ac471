#!/usr/bin/env bash
# One lever run (issue 24): NAME=SET_LEVER_sSEED, then the lever's flags; validation
# only, the shipped small_set.py recipe for one seed, the session's export as init. Keeps the
# run's metrics and predictions, drops its checkpoints and export (disk).
source bench/lease/env.sh
name=$1; shift; set_=${name%%_*}; rest=${name#*_}; lever=${rest%_s*}; seed=${name##*_s}
case $set_ in trec) data=("${trec[@]}");; sst2) data=("${sst2[@]}");; esac
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.08
mkdir -p $O/lv
( r lv_$name python3 run.py --config=configs/small_set.py --workdir=$O/lv/$name "${common[@]}" "${data[@]}" \
  --config.model.init=${LV_INIT:-$INIT} --config.search.candidates="()" --config.search.ensemble=1 \
  --config.seed=$seed --config.eval.splits="('val',)" --config.compile_cache_dir=/tmp/xla_lv/${set_}_$lever ${LVX:-} "$@" )  # a subshell: r exits 130 on Ctrl-C
rc=$?; [ $rc = 0 ] && rm -rf $O/lv/$name/checkpoints $O/lv/$name/export
[ $rc = 130 ] && exit 255  # xargs starts no further run after a Ctrl-C
exit $rc
