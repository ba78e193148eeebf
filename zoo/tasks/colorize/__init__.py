"""The colorize task: the colorizer plugin base, colour Fashion-MNIST targets, palettes,
colorization metrics and ``zoo colorize`` on image files."""
