"""Speed, memory and load benchmarks (`fewrec bench`): how fast fewrec runs on this machine, not
how well it recommends (that is eval/).

speed.py times the dataset's steps (load, index, latency, memory; `fewrec bench`), scale.py fits
and scores on synthetic data at real sizes (`--scale`), ray_overhead.py times `fewrec eval` in one
process against Ray (`--ray`), load.py runs the bounded load tests (`--load-threads`), and
sasrec_training.py times SASRec's batch plans (`python -m fewrec.bench.sasrec_training`).

They are clients of eval/ (its runner, run record, report files and sampler) and agent/; only
cli/ imports this package.
"""
