# ---- component nixl-patches: The runtime patches the NixlConnector deployment needs, to vLLM 0.17.1 and RIXL. ----
_eb_component nixl-patches b48f510e50b4cb52c55e7a14a02e22c484158df495f8deef564e92fd528becf7 rixl '' '' 0 'RIXL_HOME UCX_HOME' 'ucx rixl' '' 0
_EB_PATCHES[nixl-patches]=rixl-ucx-error-mode=3b74b20b886bbf8dad06f98b7718962610ff344bdc5c1fc694163c0be9c69180,moriep-fp8-compat=36ecffef7834b9c069c959c904acd9a8b11b84f2c26e8d9951ea3f0359cdba65,scheduler-read-mode=d4610e4dec822c34203af16d9ccf0fda53ba0159e1eecab7f3d2dbd2858e6a5d,idle-kv-reaper=95c8506a64afa0da5f5ac6a8927fb341e1030d6864576f81b616ca21a184e214
_eb_step_nixl_patches() {
  _eb_patch apply <(_eb_manifest_nixl_patches)
}
_eb_check_nixl_patches() {
  _eb_patch verify <(_eb_manifest_nixl_patches)
}
_eb_manifest_nixl_patches() {
  cat <<'_EB_MANIFEST_'
{
  "patches": [
    {
      "depends": [],
      "dist": "rixl",
      "kind": "anchored-insert",
      "name": "rixl-ucx-error-mode",
      "optional": false,
      "specifier": "",
      "text": "# RIXL f33a5599, src/api/python/_api.py (installed as rixl/_api.py),\n# nixl_agent.__init__: the loop over nixl_conf.backends fills `init` and\n# hands it to create_backend; the UCX error mode goes in just before.\nfile: rixl/_api.py\nanchor: self.create_backend(bknd, init)\ninsert: init[\"ucx_error_handling_mode\"] = \"none\"\n"
    },
    {
      "depends": [],
      "dist": "vllm",
      "kind": "diff",
      "name": "moriep-fp8-compat",
      "optional": false,
      "specifier": "==0.17.1",
      "text": "diff --git a/vllm/model_executor/layers/fused_moe/layer.py b/vllm/model_executor/layers/fused_moe/layer.py\nindex 6200477..a98ae2f 100644\n--- a/vllm/model_executor/layers/fused_moe/layer.py\n+++ b/vllm/model_executor/layers/fused_moe/layer.py\n@@ -565,9 +565,6 @@ def __init__(\n             disable_inplace=disable_inplace() or self._shared_experts is not None,\n         )\n         if self.moe_config.use_mori_kernels:\n-            assert self.rocm_aiter_fmoe_enabled, (\n-                \"Mori needs to be used with aiter fused_moe for now.\"\n-            )\n             assert not self.aiter_fmoe_shared_expert_enabled, (\n                 \"Mori does not support fusion shared expert now. \"\n                 \"Turn it off by setting VLLM_ROCM_USE_AITER_FUSION_SHARED_EXPERTS=0\"\ndiff --git a/vllm/model_executor/layers/fused_moe/mori_prepare_finalize.py b/vllm/model_executor/layers/fused_moe/mori_prepare_finalize.py\nindex 164605d..36db67e 100644\n--- a/vllm/model_executor/layers/fused_moe/mori_prepare_finalize.py\n+++ b/vllm/model_executor/layers/fused_moe/mori_prepare_finalize.py\n@@ -70,16 +70,13 @@ def prepare(\n         - Optional dispatched expert topk IDs\n         - Optional dispatched expert topk weight\n         \"\"\"\n-        if defer_input_quant:\n-            raise NotImplementedError(\n-                f\"{self.__class__.__name__} does not support defer_input_quant=True. \"\n-                \"Please select an MoE kernel that accepts quantized inputs.\"\n-            )\n         assert not apply_router_weight_on_input, (\n             \"mori does not support apply_router_weight_on_input=True now.\"\n         )\n         scale = None\n-        if self.use_fp8_dispatch:\n+        # Experts that expect unquantized inputs (defer_input_quant, e.g. the\n+        # AITER FP8 kernels) quantize them themselves: dispatch them as they are.\n+        if self.use_fp8_dispatch and not defer_input_quant:\n             from aiter import QuantType, get_hip_quant\n \n             if quant_config.is_block_quantized:\n"
    },
    {
      "depends": [],
      "dist": "vllm",
      "kind": "diff",
      "name": "scheduler-read-mode",
      "optional": false,
      "specifier": "==0.17.1",
      "text": "diff --git a/vllm/v1/core/sched/scheduler.py b/vllm/v1/core/sched/scheduler.py\nindex 618875c..af2c9e6 100644\n--- a/vllm/v1/core/sched/scheduler.py\n+++ b/vllm/v1/core/sched/scheduler.py\n@@ -2023,19 +2023,30 @@ def _update_from_kv_xfer_finished(self, kv_connector_output: KVConnectorOutput):\n             self.connector.update_connector_output(kv_connector_output)\n \n         # KV Connector:: update recv and send status from last step.\n+        # In READ mode a notification can come for a request that is gone\n+        # already, or that has left WAITING_FOR_REMOTE_KVS without finishing:\n+        # skip it rather than bring the engine down.\n         for req_id in kv_connector_output.finished_recving or ():\n             logger.debug(\"Finished recving KV transfer for request %s\", req_id)\n-            assert req_id in self.requests\n-            req = self.requests[req_id]\n-            if req.status == RequestStatus.WAITING_FOR_REMOTE_KVS:\n+            req = self.requests.get(req_id)\n+            if req is not None and req.status == RequestStatus.WAITING_FOR_REMOTE_KVS:\n                 self.finished_recving_kv_req_ids.add(req_id)\n+            elif req is not None and req.is_finished():\n+                self._free_blocks(req)\n             else:\n-                assert RequestStatus.is_finished(req.status)\n-                self._free_blocks(self.requests[req_id])\n+                logger.warning(\n+                    \"Skipping finished recving of request %s in state %s\",\n+                    req_id,\n+                    req.status if req is not None else \"unknown\",\n+                )\n         for req_id in kv_connector_output.finished_sending or ():\n             logger.debug(\"Finished sending KV transfer for request %s\", req_id)\n-            assert req_id in self.requests\n-            self._free_blocks(self.requests[req_id])\n+            if req_id in self.requests:\n+                self._free_blocks(self.requests[req_id])\n+            else:\n+                logger.warning(\n+                    \"Skipping finished sending of unknown request %s\", req_id\n+                )\n \n     def _update_requests_with_invalid_blocks(\n         self,\n"
    },
    {
      "depends": [
        "scheduler-read-mode"
      ],
      "dist": "vllm",
      "kind": "diff",
      "name": "idle-kv-reaper",
      "optional": false,
      "specifier": "==0.17.1",
      "text": "diff --git a/vllm/v1/core/sched/scheduler.py b/vllm/v1/core/sched/scheduler.py\nindex af2c9e6..8648104 100644\n--- a/vllm/v1/core/sched/scheduler.py\n+++ b/vllm/v1/core/sched/scheduler.py\n@@ -59,6 +59,10 @@\n \n logger = init_logger(__name__)\n \n+# Finished requests that still hold KV blocks after this long without a running\n+# request have lost their transfer notification (see _reap_idle_kv_blocks).\n+IDLE_KV_REAP_AFTER_S = 5.0\n+\n \n class Scheduler(SchedulerInterface):\n     def __init__(\n@@ -175,6 +179,7 @@ def __init__(\n         # KV Connector: requests in process of async KV loading or recving\n         self.finished_recving_kv_req_ids: set[str] = set()\n         self.failed_recving_kv_req_ids: set[str] = set()\n+        self._no_running_since: float | None = None\n \n         # Encoder-related.\n         # Calculate encoder cache size if applicable\n@@ -348,6 +353,7 @@ def schedule(self) -> SchedulerOutput:\n         scheduled_timestamp = time.monotonic()\n \n         self.kv_cache_manager.new_step_starts()\n+        self._reap_idle_kv_blocks(scheduled_timestamp)\n \n         # First, schedule the RUNNING requests.\n         req_index = 0\n@@ -1767,6 +1773,36 @@ def _free_blocks(self, request: Request):\n         self.kv_cache_manager.free(request)\n         del self.requests[request.request_id]\n \n+    def _reap_idle_kv_blocks(self, now: float) -> None:\n+        \"\"\"Free the blocks of finished requests once nothing has run for a while.\n+\n+        A finished request whose KV cache is sent keeps its blocks until the\n+        connector reports finished_sending, and RIXL can lose that report under\n+        load: leaked blocks piled up until nothing could be scheduled (C512\n+        deadlock). Waiting requests do not count as activity, since they are\n+        the ones starved by the leak. This runs when a step is scheduled, so\n+        after a quiet period it frees the blocks before the next request runs.\n+        \"\"\"\n+        if self.running:\n+            self._no_running_since = None\n+            return\n+        if self._no_running_since is None:\n+            self._no_running_since = now\n+            return\n+        if now - self._no_running_since <= IDLE_KV_REAP_AFTER_S:\n+            return\n+        leaked = [req for req in self.requests.values() if req.is_finished()]\n+        for req in leaked:\n+            self._free_blocks(req)\n+        if leaked:\n+            logger.warning(\n+                \"Freed the KV blocks of %d finished requests after %.1f s \"\n+                \"without a running request\",\n+                len(leaked),\n+                now - self._no_running_since,\n+            )\n+        self._no_running_since = now\n+\n     @property\n     def pause_state(self) -> PauseState:\n         return self._pause_state\n"
    }
  ]
}
_EB_MANIFEST_
}
_eb_env_nixl_patches() {
  :
}
