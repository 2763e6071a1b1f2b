//! atom-quantum: circuits, OpenQASM 2 and a statevector simulator.
