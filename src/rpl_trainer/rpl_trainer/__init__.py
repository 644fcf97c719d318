"""DDPG + HER residual policy learning, ONNX export and the trainer node (bags: rpl_bags).

Modules (import what you need; nothing heavy is imported here):

* :mod:`rpl_trainer.config` - ``TrainConfig``, the one typed config of a run.
* :mod:`rpl_trainer.train` - ``train(config, out_dir)``, ``Trainer``: the `rpl train` loop.
* :mod:`rpl_trainer.problem` - ``Problem``, ``registered_problem``: a task as the trainer sees it.
* :mod:`rpl_trainer.stop` - SIGINT / SIGTERM -> stop requests, ``TrainingInterrupted``.
* :mod:`rpl_trainer.run_dir` - the ``--out`` directory: file names, refuse / resume policy.
* :mod:`rpl_trainer.metrics` - metrics.csv: columns, appending rows, resume truncation.
* :mod:`rpl_trainer.learner` - ``Learner``: the one DDPG + HER learner of `rpl train` and the
  trainer node (buffer, HER, update debt, export, state), ``start_from`` (warm start).
* :mod:`rpl_trainer.ddpg` - ``DDPGAgent`` (updates, polyak targets, critic burn-in).
* :mod:`rpl_trainer.her` - ``ReplayBuffer`` of episodes and the 'future' ``HerSampler``.
* :mod:`rpl_trainer.residual` - executed = clip(base + scale * u), exploration rules.
* :mod:`rpl_trainer.rollout` - sync / subprocess vector envs with per-env base controllers.
* :mod:`rpl_trainer.export` - ONNX export (docs/onnx_contract.md).
* :mod:`rpl_trainer.episodes` - ``EpisodeRecord`` (one published episode), skip reasons, ->
  HER episodes.
* :mod:`rpl_trainer.assembler` - ``EpisodeAssembler``: live messages -> complete episodes.
* :mod:`rpl_trainer.bag_ingest` - ``ingest_bags``: recorded bags -> the offline learner.
* :mod:`rpl_trainer.offline` - ``OfflineLearner`` (the learner fed episode records), node
  checkpoints.
* :mod:`rpl_trainer.trainer_node_config` - ``TrainerNodeConfig``, ``train_overrides`` parsing.
* :mod:`rpl_trainer.cli` - ``rpl train`` / ``rpl plot``.
"""
