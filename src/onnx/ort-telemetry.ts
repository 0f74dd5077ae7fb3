// Imported before onnxruntime-node. onnxruntime 1.2x on Linux starts Microsoft's 1DS telemetry client
// in every process that creates a session; it leaves an empty mat-debug-PID.log and a .ses file in
// the temp folder. ORT_DISABLE_TELEMETRY=1 turns the client off; a value the user set is kept.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
export {};
