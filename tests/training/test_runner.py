"""What the trainer says when a worker of a cluster goes away."""
import types

import tensorflow as tf

from deeplab2.training.runner import lost_peer_message


def test_a_lost_peer_is_named_with_how_to_resume():
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": ["localhost:1", "localhost:2"]}),
        task_type="worker", task_id=0)
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    error = tf.errors.UnavailableError(
        None, None, "Collective ops is aborted by: Socket closed\nAdditional GRPC error "
        "information from remote target /job:worker/replica:0/task:1 while calling "
        "/tensorflow.WorkerService/RecvBuf")
    message = lost_peer_message(error, strategy, "runs/m")
    assert "\n" not in message
    assert message.startswith("lost contact with worker 1 (worker 0 of 2 workers reports "
                              "UnavailableError: Collective ops is aborted by: Socket closed")
    assert message.endswith("Restart every worker with the same command: training resumes "
                            "from the last checkpoint in runs/m.")
    unnamed = lost_peer_message(tf.errors.DeadlineExceededError(None, None, "timed out"),
                                strategy, "runs/m")
    assert unnamed.startswith("lost contact with another worker (worker 0 of 2")
