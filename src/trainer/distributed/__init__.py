"""Distributed (DDP) training: the refusals, a worker node's life (launch) and `trainer check-distributed`."""
