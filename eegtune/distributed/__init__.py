"""Ray: where folds run in parallel and searches are scheduled.

- ``resources``: how many CPUs each fold worker gets, and what would deadlock;
- ``memory_plan``: memory or stream mode, and the memory each fold worker needs;
- ``shared_windows``: the store's windows once per node in Ray's object store;
- ``train``: one fold-parallel TorchTrainer per configuration;
- ``fold_reporter``: the folds' epochs pooled into one report, and checkpointed with it;
- ``data_parallel``: several workers per fold, sharing each batch;
- ``tune``: Ray Tune with Optuna TPE and ASHA, or the random/FIFO baseline;
- ``study``: an experiment's durable Optuna journal and its results table;
- ``runtime``: starting or joining Ray.

Ray is imported lazily inside functions, so importing eegtune stays fast.
"""
