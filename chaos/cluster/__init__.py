"""The cluster test (make cluster-test): hosts in network namespaces; see chaos/cluster/run.py."""
