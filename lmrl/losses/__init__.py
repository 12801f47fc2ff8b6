from .ilql import (
    awac_weights,
    bc_loss,
    cql_loss,
    expectile_loss,
    ilql_loss,
    mc_loss,
    monte_carlo_returns,
    next_state_values,
    q_loss,
    td_targets,
    v_loss,
)

__all__ = [
    "awac_weights",
    "bc_loss",
    "cql_loss",
    "expectile_loss",
    "ilql_loss",
    "mc_loss",
    "monte_carlo_returns",
    "next_state_values",
    "q_loss",
    "td_targets",
    "v_loss",
]
