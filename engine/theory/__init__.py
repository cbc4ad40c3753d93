"""Theory tools of seed 000 §6–9: the implicit Gaussian prior of early-stopped gradient descent
(Theorem 2), PAC-Bayes meta-generalization bounds (§7), the Fallah–Mokhtari–Ozdaglar
convergence constants of MAML (§8) and the meta-gradient variance across task batches (§9.4).

Each module is a set of pure functions on tensors and backend primitives; the experiment that
puts them to work on trained meta-learners is ``innerloop experiment theory``.
"""

from innerloop.engine.theory import (
    constants,
    convergence,
    gradient_variance,
    implicit_prior,
    pac_bayes,
    pac_bayes_maml,
)

__all__ = ["constants", "convergence", "gradient_variance", "implicit_prior", "pac_bayes", "pac_bayes_maml"]
