/** Triton-format /metrics text (as served on :8002/metrics) for loopback tests. */
export interface TritonState {
  queueUs: number;
  requests: number;
  inferences: number;
}

export const GPU0 = "GPU-0f6a8b1c-2d3e-4f50-8a9b-0c1d2e3f4a5b";
export const GPU1 = "GPU-7e8d9c0b-1a2b-4c3d-9e8f-7a6b5c4d3e2f";

export function tritonMetrics(s: TritonState): string {
  return [
    "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes",
    "# TYPE nv_inference_request_success counter",
    `nv_inference_request_success{model="openvla",version="1"} ${s.requests}`,
    'nv_inference_request_success{model="idle_model",version="3"} 0',
    "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes",
    "# TYPE nv_inference_request_failure counter",
    'nv_inference_request_failure{model="openvla",version="1"} 2',
    "# HELP nv_inference_count Number of inferences performed (does not include cached requests)",
    "# TYPE nv_inference_count counter",
    `nv_inference_count{model="openvla",version="1"} ${s.inferences}`,
    'nv_inference_count{model="idle_model",version="3"} 0',
    "# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds (includes cached requests)",
    "# TYPE nv_inference_queue_duration_us counter",
    `nv_inference_queue_duration_us{model="openvla",version="1"} ${s.queueUs}`,
    'nv_inference_queue_duration_us{model="idle_model",version="3"} 0',
    "# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)",
    "# TYPE nv_gpu_utilization gauge",
    `nv_gpu_utilization{gpu_uuid="${GPU0}"} 0.62`,
    `nv_gpu_utilization{gpu_uuid="${GPU1}"} 0`,
    "# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes",
    "# TYPE nv_gpu_memory_total_bytes gauge",
    `nv_gpu_memory_total_bytes{gpu_uuid="${GPU0}"} 8.589934592e+10`,
    `nv_gpu_memory_total_bytes{gpu_uuid="${GPU1}"} 85899345920`,
    "# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes",
    "# TYPE nv_gpu_memory_used_bytes gauge",
    `nv_gpu_memory_used_bytes{gpu_uuid="${GPU0}"} 17179869184`,
    `nv_gpu_memory_used_bytes{gpu_uuid="${GPU1}"} 524288000`,
    "# HELP nv_gpu_power_usage GPU power usage in watts",
    "# TYPE nv_gpu_power_usage gauge",
    `nv_gpu_power_usage{gpu_uuid="${GPU0}"} 243.117`,
    `nv_gpu_power_usage{gpu_uuid="${GPU1}"} NaN`,
    "",
  ].join("\n");
}
