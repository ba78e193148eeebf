"""The attack task: the attack plugin contract (:mod:`.base`), what the core does for
every attack run (:mod:`.runner`, :mod:`.checks`, :mod:`.plots`) and the perturbations
(FGSM, PGD) that attacks and adversarial training share (:mod:`.perturbations`)."""

from zoo.tasks.attack.base import AttackConfig, AttackPlugin

__all__ = ["AttackConfig", "AttackPlugin"]
