"""Cluster-wide stats: each process's responder and reporter, the gather, the combined figures, instance health."""
