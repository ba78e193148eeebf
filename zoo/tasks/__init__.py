"""One module or package per task (classify, generate, attack, colorize): the plugin
base a task's plugins subclass, its metrics and its pictures."""
