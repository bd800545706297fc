// Capstone 4 (Debian libcapstone-dev) for the Disassembly module.
#include <capstone/capstone.h>
