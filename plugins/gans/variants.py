"""The ten variants: each is its losses (and schedule) on top of the shared GANPlugin.

Hyperparameters follow the reference collection: WGAN clip 0.01 and n_critic 5;
WGAN_GP lambda 10 and n_critic 5; DRAGAN lambda 0.25; BEGAN gamma 1, lambda_k 0.001,
k0 0; EBGAN margin 1 and pulling-away weight 0.1; infoGAN 10 categorical + 2
continuous codes.
"""

from __future__ import annotations

import attrs

from zoo import PluginInfo, hookimpl, option
from zoo_plugins.gans.base import NUM_CLASSES, REFERENCE, GANConfig, GANPlugin


def _info(name: str, summary: str, paper: str) -> PluginInfo:
    return PluginInfo(name=name, task="generate", summary=summary, paper=f"{paper}; {REFERENCE}")


def _losses():
    from zoo_plugins.gans import losses

    return losses


class GAN(GANPlugin):
    info = _info("gan", "GAN: the original minimax game, BCE losses", "Goodfellow et al. 2014")
    # measured on an AMX CPU (docs/RESULTS.md, issue 18): bf16 with the discriminator's
    # logit layer in fp32 keeps the FD inside fp32's seed spread at 1.6x the speed; on
    # CUDA bf16 was no faster and widened the FD, so auto stays fp32 there
    defaults = {**GANPlugin.defaults, "precision": "auto", "fp32_modules": ("discriminator.fc.3",)}
    auto_bf16_devices = ("cpu",)

    def discriminator_loss(self, real, fake, labels, latent):
        bce = _losses().bce
        d = self.discriminate
        return bce(d(real, labels)[:, :1], True) + bce(d(fake, labels)[:, :1], False), {}

    def generator_loss(self, fake, labels, latent):
        return _losses().bce(self.discriminate(fake, labels)[:, :1], True), {}


class CGAN(GAN):
    info = _info(
        "cgan",
        "Conditional GAN: label fed to G and as extra channels to D",
        "Mirza & Osindero 2014",
    )
    label_input = True
    label_channels = True
    defaults = GANPlugin.defaults  # bf16 is measured for the plain gan only
    auto_bf16_devices = GANPlugin.auto_bf16_devices


class LSGAN(GANPlugin):
    info = _info("lsgan", "Least-squares GAN: squared error instead of log loss", "Mao et al. 2017")

    def discriminator_loss(self, real, fake, labels, latent):
        ls = _losses().least_squares
        return ls(self.discriminate(real), 1.0) + ls(self.discriminate(fake), 0.0), {}

    def generator_loss(self, fake, labels, latent):
        return _losses().least_squares(self.discriminate(fake), 1.0), {}


class ACGAN(GANPlugin):
    info = _info(
        "acgan", "Auxiliary-classifier GAN: D also predicts the class", "Odena et al. 2017"
    )
    label_input = True
    discriminator_outputs = 1 + NUM_CLASSES

    def discriminator_loss(self, real, fake, labels, latent):
        import torch.nn.functional as F

        bce = _losses().bce
        real_out, fake_out = self.discriminate(real), self.discriminate(fake)
        adversarial = bce(real_out[:, :1], True) + bce(fake_out[:, :1], False)
        classes = F.cross_entropy(real_out[:, 1:].float(), labels) + F.cross_entropy(
            fake_out[:, 1:].float(), labels
        )
        return adversarial + classes, {"d_class_loss": classes.detach()}

    def generator_loss(self, fake, labels, latent):
        import torch.nn.functional as F

        out = self.discriminate(fake)
        classes = F.cross_entropy(out[:, 1:].float(), labels)
        return _losses().bce(out[:, :1], True) + classes, {"g_class_loss": classes.detach()}


@attrs.frozen
class InfoGANConfig(GANConfig):
    info_weight: float = option(1.0, help="Weight of the mutual-information loss.", min=0.0)
    supervised: bool = option(
        True,
        help="Supervised: the categorical code is the true label and D's code head also "
        "learns the labels of real images, so code k means class k.",
    )


class InfoGAN(GANPlugin):
    info = _info(
        "infogan", "infoGAN: 10 categorical + 2 continuous codes, MI loss", "Chen et al. 2016"
    )
    Config = InfoGANConfig
    report_captions = {
        "samples/code_*_sweep.png": "Continuous code {n} swept from -1 to 1 (rows: classes)"
    }
    label_input = True  # the categorical code, shown as one class per grid column
    code_dim = 2
    discriminator_outputs = 1 + NUM_CLASSES + 2

    def train_step(self, batch):
        if not self.config.supervised:  # unsupervised: the categorical code is drawn at random
            import torch

            labels = torch.randint(0, NUM_CLASSES, batch.labels.shape, device=batch.labels.device)
            batch = attrs.evolve(batch, labels=labels)
        return super().train_step(batch)

    def _information(self, out, labels, latent):
        import torch.nn.functional as F

        categorical = F.cross_entropy(out[:, 1 : 1 + NUM_CLASSES].float(), labels)
        continuous = F.mse_loss(out[:, 1 + NUM_CLASSES :].float(), latent[:, -self.code_dim :])
        return self.config.info_weight * (categorical + continuous)

    def discriminator_loss(self, real, fake, labels, latent):
        import torch.nn.functional as F

        bce = _losses().bce
        fake_out, real_out = self.discriminate(fake), self.discriminate(real)
        information = self._information(fake_out, labels, latent)
        adversarial = bce(real_out[:, :1], True) + bce(fake_out[:, :1], False)
        loss = adversarial + information
        if self.config.supervised:  # tie categorical code k to real class k
            loss = loss + F.cross_entropy(real_out[:, 1 : 1 + NUM_CLASSES].float(), labels)
        return loss, {"info_loss": information.detach()}

    def generator_loss(self, fake, labels, latent):
        out = self.discriminate(fake)
        return _losses().bce(out[:, :1], True) + self._information(out, labels, latent), {}

    def end_of_training(self, epoch) -> None:
        super().end_of_training(epoch)
        self.save_code_sweeps(epoch.run.path / "samples")

    def save_code_sweeps(self, folder) -> None:
        """One grid per continuous code: rows are classes, columns sweep the code -1..1."""
        import torch

        from zoo import FIXED_NOISE_SEED, save_grid

        steps = torch.linspace(-1, 1, 10, device=self.device)
        base = self.latent(1, torch.Generator().manual_seed(FIXED_NOISE_SEED))
        labels = torch.arange(NUM_CLASSES, device=self.device).repeat_interleave(len(steps))
        for code in range(self.code_dim):
            latent = base.repeat(len(labels), 1)
            latent[:, self.config.z_dim + code] = steps.repeat(NUM_CLASSES)
            images = self.generate(latent, labels)
            save_grid(
                images,
                folder / f"code_{code + 1}_sweep.png",
                nrow=len(steps),
                pixel_range=self.pixel_range,
            )


@attrs.frozen
class WGANConfig(GANConfig):
    clip: float = option(0.01, help="Critic weights are clipped to [-clip, clip].", min=0.0)
    n_critic: int = option(5, help="Critic updates per generator update.", min=1, max=1000)


class WGAN(GANPlugin):
    info = _info(
        "wgan", "Wasserstein GAN: critic with weight clipping, n_critic 5", "Arjovsky et al. 2017"
    )
    Config = WGANConfig

    def discriminator_loss(self, real, fake, labels, latent):
        d = self.discriminate
        distance = d(real).mean() - d(fake).mean()
        return -distance, {"wasserstein": distance.detach()}

    def generator_loss(self, fake, labels, latent):
        return -self.discriminate(fake).mean(), {}

    def after_discriminator_step(self) -> None:
        for parameter in self.modules["discriminator"].parameters():
            parameter.data.clamp_(-self.config.clip, self.config.clip)


@attrs.frozen
class WGANGPConfig(GANConfig):
    gp_lambda: float = option(10.0, help="Gradient-penalty weight.", min=0.0)
    n_critic: int = option(5, help="Critic updates per generator update.", min=1, max=1000)


PENALTY_CANNOT_COMPILE = (
    "its gradient penalty backpropagates through the critic's gradients (a double "
    "backward), which torch.compile does not support"
)


class WGAN_GP(WGAN):  # the paper's spelling
    info = _info(
        "wgan_gp",
        "WGAN-GP: gradient penalty on real-fake interpolates, n_critic 5",
        "Gulrajani et al. 2017",
    )
    Config = WGANGPConfig
    discriminator_batch_norm = False  # the penalty is per sample; batch norm would mix them
    cannot_compile = PENALTY_CANNOT_COMPILE

    def discriminator_loss(self, real, fake, labels, latent):
        losses = _losses()
        loss, logs = super().discriminator_loss(real, fake, labels, latent)
        penalty = losses.gradient_penalty(self.discriminate, losses.interpolate(real, fake))
        return loss + self.config.gp_lambda * penalty, {
            **logs,
            "gradient_penalty": penalty.detach(),
        }

    def after_discriminator_step(self) -> None:
        """No clipping: the penalty replaces it."""


@attrs.frozen
class DRAGANConfig(GANConfig):
    gp_lambda: float = option(0.25, help="Penalty weight around perturbed real data.", min=0.0)


class DRAGAN(GAN):
    info = _info(
        "dragan", "DRAGAN: gradient penalty around perturbed real data", "Kodali et al. 2017"
    )
    Config = DRAGANConfig
    discriminator_batch_norm = False
    cannot_compile = PENALTY_CANNOT_COMPILE
    defaults = GANPlugin.defaults  # bf16 is measured for the plain gan only
    auto_bf16_devices = GANPlugin.auto_bf16_devices

    def discriminator_loss(self, real, fake, labels, latent):
        losses = _losses()
        loss, _ = super().discriminator_loss(real, fake, labels, latent)
        points = losses.interpolate(real, losses.dragan_perturb(real))
        penalty = losses.gradient_penalty(self.discriminate, points)
        return loss + self.config.gp_lambda * penalty, {"gradient_penalty": penalty.detach()}


@attrs.frozen
class EBGANConfig(GANConfig):
    margin: float = option(1.0, help="Energy margin for fake images.", min=0.0)
    pullaway_weight: float = option(0.1, help="Weight of the pulling-away term.", min=0.0)


class EBGAN(GANPlugin):
    info = _info(
        "ebgan", "Energy-based GAN: autoencoder D, margin and pulling-away term", "Zhao et al. 2017"
    )
    Config = EBGANConfig
    autoencoder = True

    def discriminator_loss(self, real, fake, labels, latent):
        import torch.nn.functional as F

        energy = _losses().reconstruction_mse
        d = self.modules["discriminator"]
        real_energy, fake_energy = energy(d, real)[0], energy(d, fake)[0]
        loss = real_energy + F.relu(self.config.margin - fake_energy)
        return loss, {"real_energy": real_energy.detach()}

    def generator_loss(self, fake, labels, latent):
        """As the reference: the energy's target is the detached image, so G is moved only
        through D's reconstruction (with both sides attached, G collapsed onto a fixed
        point of the autoencoder, a checkerboard, within one epoch)."""
        losses = _losses()
        fake_energy, codes = losses.reconstruction_mse(
            self.modules["discriminator"], fake, target=fake.detach()
        )
        pullaway = losses.pulling_away(codes)
        return fake_energy + self.config.pullaway_weight * pullaway, {"pullaway": pullaway.detach()}


@attrs.frozen
class BEGANConfig(GANConfig):
    gamma: float = option(1.0, help="Diversity ratio gamma.", min=0.0)
    lambda_k: float = option(0.001, help="Learning rate of the balance term k.", min=0.0)
    k0: float = option(0.0, help="Initial k.", min=0.0, max=1.0)
    lr_floor: float = option(
        2e-5,
        help="The learning rate halves after an epoch whose mean convergence measure rose, "
        "down to this floor.",
        min=0.0,
    )


class BEGAN(GANPlugin):
    info = _info(
        "began", "Boundary-equilibrium GAN: autoencoder D, balance term k", "Berthelot et al. 2017"
    )
    Config = BEGANConfig
    autoencoder = True
    autoencoder_batch_norm = False  # the reference's BEGAN decoder is linear

    def build(self):
        import torch

        modules = dict(super().build())
        # k and the convergence bookkeeping are training state: buffers, so checkpoints hold them
        balance = torch.nn.Module()
        balance.register_buffer("k", torch.tensor(float(self.config.k0)))
        balance.register_buffer("convergence_sum", torch.tensor(0.0, dtype=torch.float64))
        balance.register_buffer("convergence_steps", torch.tensor(0))
        balance.register_buffer("previous_convergence", torch.tensor(1.0, dtype=torch.float64))
        modules["balance"] = balance
        return modules

    def train_step(self, batch):
        losses = _losses()
        real = batch.images
        fake = self.generate(self.latent(len(real)))
        d = self.modules["discriminator"]
        balance = self.modules["balance"]
        k = balance.k
        real_loss = losses.reconstruction_l1(d, real)
        fake_loss = losses.reconstruction_l1(d, fake.detach())
        d_loss = real_loss - k * fake_loss
        self.update("discriminator", d_loss)
        g_loss = losses.reconstruction_l1(d, fake)
        self.update("generator", g_loss)
        equilibrium = (self.config.gamma * real_loss - g_loss).detach()
        k.copy_((k + self.config.lambda_k * equilibrium).clamp(0, 1))
        convergence = real_loss.detach() + equilibrium.abs()
        balance.convergence_sum += convergence.double()
        balance.convergence_steps += 1
        return {
            "d_loss": (real_loss - k * fake_loss).detach(),
            "g_loss": g_loss.detach(),
            "k": k.clone(),
            "convergence": convergence,
        }

    def end_of_epoch(self, epoch):
        """The reference's schedule: halve both learning rates when convergence got worse."""
        metrics = dict(super().end_of_epoch(epoch))
        balance = self.modules["balance"]
        if int(balance.convergence_steps) == 0:
            return metrics
        current = balance.convergence_sum / balance.convergence_steps
        if current > balance.previous_convergence:
            for optimizer in self.optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = max(group["lr"] / 2, self.config.lr_floor)
        else:
            balance.previous_convergence.copy_(current)
        balance.convergence_sum.zero_()
        balance.convergence_steps.zero_()
        lr = self.optimizers["generator"].param_groups[0]["lr"]
        return {**metrics, "mean_convergence": float(current), "lr": lr}


VARIANTS = (GAN, CGAN, InfoGAN, ACGAN, EBGAN, BEGAN, WGAN, WGAN_GP, DRAGAN, LSGAN)


@hookimpl
def register_plugins(register) -> None:
    for variant in VARIANTS:
        register(variant)
