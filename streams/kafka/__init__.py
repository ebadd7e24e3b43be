"""Kafka at the edge: the Faust app, the codec, topics, admin, consuming, producing."""
