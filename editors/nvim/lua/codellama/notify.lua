--- User-facing messages: scheduled (safe from callbacks and fast events) and shown once per key per
--- `interval` seconds, so nothing pops up on every keystroke.

local M = {}

local last_shown = {} ---@type table<string, number>
local INTERVAL_S = 300

---@param msg string
---@param level? integer vim.log.levels.*, default WARN
---@param key? string messages with the same key are rate-limited together (default: the message)
function M.notify(msg, level, key)
  key = key or msg
  local now = vim.uv.now() / 1000
  if last_shown[key] and now - last_shown[key] < INTERVAL_S then
    return
  end
  last_shown[key] = now
  vim.schedule(function()
    vim.notify('codellama: ' .. msg, level or vim.log.levels.WARN, { title = 'codellama' })
  end)
end

--- Forget what was shown (setup() calls this, so a fixed configuration can report again).
function M.reset()
  last_shown = {}
end

return M
