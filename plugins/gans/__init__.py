"""The ten GAN variants of the reference collection, sharing one pair of networks."""
