"""avgen: joint audio-video generation."""
