"""The paper's two observations, measured on our own checkpoints (docs/method.md, docs/analysis.md).

task_affinity.py: TAS between timestep tasks (O1), projected (sketch.py) or exact;
tas_command.py: `main.py --mode=tas`, the TAS of a workdir's checkpoints -> tas.npy + heatmaps;
negative_transfer.py: `main.py --mode=ntg`, specialists per interval and the negative transfer
gap (O2); plots.py: the figures.
sweep.py / sweep_report.py: a resumable sweep of config rows x seeds evaluated at several
checkpoints, and its report (benchmarks/reproduce_table1.py, docs/results.md).
"""
