// Moved to segments/core/boundary_observer.h (the segment interface reports through it). This path
// stays for the GPU kinds (segments/cuda/kinds.h) until they include the new one.
#pragma once
#include "segments/core/boundary_observer.h"
