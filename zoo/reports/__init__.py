"""Presentation of run folders: plots and grids, the self-contained HTML run report and
the leaderboard. It knows no task: plugins caption their own pictures."""
