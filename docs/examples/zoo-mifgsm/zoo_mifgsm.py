"""MI-FGSM as a zoo attack plugin: a worked example of the attack contract.

Momentum iterative FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum",
CVPR 2018) takes ``steps`` signed steps of ``alpha = eps / steps``; each follows a
running sum of L1-normalised gradients, ``g = mu * g + grad / ||grad||_1``, so the
direction is steadier than a fresh gradient's. zoo does the rest: the targets, the
masked and standard modes, the checks, robustness.json and the pictures.
"""

from __future__ import annotations

import attrs

import zoo
from zoo import AttackConfig, AttackPlugin, PluginInfo, hookimpl, option


@attrs.frozen
class MIFGSMConfig(AttackConfig):
    steps: int = option(10, help="Iterations; each moves alpha = eps / steps.", min=1, max=1000)
    decay: float = option(1.0, help="Momentum decay mu (1.0 in the paper).", min=0.0)


class MIFGSM(AttackPlugin):
    info = PluginInfo(
        name="mifgsm",
        task="attack",
        summary="MI-FGSM: iterative FGSM steps along a momentum of L1-normalised gradients",
        paper="Dong et al., Boosting Adversarial Attacks with Momentum, CVPR 2018, "
        "arXiv:1710.06081",
        version="0.1",
    )
    Config = MIFGSMConfig

    def perturb(self, model, images, labels, eps, *, mask=None, generator=None):
        import torch  # imported here so `zoo list` stays fast

        low, high = model.pixel_range
        alpha = eps / self.config.steps
        momentum = torch.zeros_like(images)
        adversarial = images.detach()
        for _ in range(self.config.steps):
            gradient = zoo.input_gradient(model.predict, adversarial, labels)
            l1 = gradient.abs().sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            momentum = self.config.decay * momentum + gradient / l1
            step = alpha * momentum.sign()
            if mask is not None:  # masked mode: the background stays as it is
                step = step * mask
            adversarial = adversarial + step
            # back into the eps-ball around the clean images, then into the pixel range
            adversarial = torch.min(torch.max(adversarial, images - eps), images + eps)
            adversarial = adversarial.clamp(low, high)
        return adversarial


@hookimpl
def register_plugins(register):
    register(MIFGSM)
