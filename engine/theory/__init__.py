"""Theory tools of seed 000 §6–9: the implicit Gaussian prior of early-stopped gradient descent
(Theorem 2), PAC-Bayes meta-generalization bounds (§7), the Fallah–Mokhtari–Ozdaglar
convergence constants of MAML (§8) and the meta-gradient variance across task batches (§9.4); and
the generalization theory of monograph ch. 4: information risk minimization and Gibbs learners
(§4.1.2, §4.4), information-theoretic and PAC-Bayes bounds (§4.1, §4.3), task relatedness
(§4.3.2), an environment where all of them are exact, and the minimum excess meta-risk of
Bayesian meta-learning (§4.5); the exact risk of minimum-norm least squares on both sides of the
interpolation threshold (§7.2.1); the excess meta-risk of a misspecified Bayesian meta-learner
(§7.2.2); bilevel problems whose lower level has many solutions (§7.1.4).

Each module is a set of pure functions on tensors and backend primitives; the experiment that
puts them to work on trained meta-learners is ``innerloop experiment theory``.
"""

from innerloop.engine.theory import (
    bernoulli_environment,
    constants,
    convergence,
    degenerate_bilevel,
    double_descent,
    excess_meta_risk,
    gibbs,
    gradient_variance,
    implicit_prior,
    information_bounds,
    misspecification,
    pac_bayes,
    pac_bayes_maml,
    relatedness,
)

__all__ = ["bernoulli_environment", "constants", "convergence", "degenerate_bilevel", "double_descent",
           "excess_meta_risk", "gibbs", "gradient_variance", "implicit_prior", "information_bounds",
           "misspecification", "pac_bayes", "pac_bayes_maml", "relatedness"]
