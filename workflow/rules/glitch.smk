# glitch rules (added with the stage).
