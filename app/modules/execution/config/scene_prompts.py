"""Scene presets for the sceneBuilder node: a preset name fills the fields the user left out."""

from __future__ import annotations

SCENE_PRESETS: dict[str, dict[str, str]] = {
    "none": {},
    "cinematic": {"camera": "wide anamorphic shot, shallow depth of field",
                  "mood": "dramatic, high contrast lighting"},
    "noir": {"camera": "low angle, hard shadows", "mood": "tense, rain-soaked, monochrome"},
    "fairy_tale": {"camera": "soft focus, warm tones", "mood": "whimsical and gentle"},
    "documentary": {"camera": "handheld, natural light", "mood": "observational, candid"},
}

SCENE_PRESET_NAMES = tuple(SCENE_PRESETS)
