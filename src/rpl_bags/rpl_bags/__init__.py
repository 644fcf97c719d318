"""rosbag2 bags of the RPL stack: record, read (damaged files salvaged), play, evaluate, replay.

Modules (import what you need; nothing heavy is imported here, and nothing imports torch):

* :mod:`rpl_bags.topics` - the recorded topics, their types and QoS, the type store.
* :mod:`rpl_bags.writer` - ``BagWriter`` (and the recorder's config).
* :mod:`rpl_bags.reader` - ``read_raw_bag``: the messages of a bag, damaged ones too.
* :mod:`rpl_bags.recorded` - ``load_run``: a bag as per-episode records by step index.
* :mod:`rpl_bags.playback` - the topics and schedule of ``rpl bag play``.
* :mod:`rpl_bags.mcap_salvage` - record-by-record reading of a damaged ``.mcap`` file.
* :mod:`rpl_bags.bag_eval` - per-episode numbers of a recorded run (``rpl bag eval``).
* :mod:`rpl_bags.bag_replay` - an ONNX model replayed over a recorded run.
* :mod:`rpl_bags.bag_cli` - ``rpl bag record|play|eval|replay-model``.
* :mod:`rpl_bags.bag_recorder_node` / :mod:`rpl_bags.bag_play_node` - the rclpy parts.
"""
