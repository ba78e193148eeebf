"""The built-in colorizer: gray Fashion-MNIST garments to colour (the paper's third effort)."""
