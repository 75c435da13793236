--- Code actions (explain / refactor / add docstring). The server lists them for `vim.lsp.buf.code_action()`
--- and runs them as workspace/executeCommand; these client-side command handlers add what only the editor
--- can do: ask for the refactor instruction, show the explanation in a floating window (closed with `q`), and
--- report the outcome. The edit itself arrives from the server as workspace/applyEdit, versioned, so a buffer
--- that changed meanwhile is not touched.

local client = require('codellama.client')
local notify = require('codellama.notify')

local M = {}

--- The markdown in a focused floating window; `q` closes it.
function M.show_markdown(markdown)
  local lines = vim.split(markdown, '\n', { plain = true })
  local bufnr, winid = vim.lsp.util.open_floating_preview(lines, 'markdown', {
    border = 'rounded',
    focus_id = 'codellama-explain',
    max_width = math.max(40, math.floor(vim.o.columns * 0.8)),
    max_height = math.max(10, math.floor(vim.o.lines * 0.7)),
  })
  vim.api.nvim_set_current_win(winid)
  vim.keymap.set('n', 'q', function()
    if vim.api.nvim_win_is_valid(winid) then
      vim.api.nvim_win_close(winid, true)
    end
  end, { buffer = bufnr, nowait = true, desc = 'codellama: close' })
  return bufnr, winid
end

--- Send `command` to the server that offered it; `done(result)` on success, errors become one message.
local function execute(command, ctx, done)
  local c = vim.lsp.get_client_by_id(ctx.client_id)
  if not c then
    return
  end
  local params = { command = command.command, arguments = command.arguments }
  client.request(c, 'workspace/executeCommand', params, function(err, result)
    if err then
      if err.code ~= -32800 then -- cancelled by the user: nothing to say
        notify.notify(('%s failed: %s'):format(command.command, err.message), vim.log.levels.ERROR, command.command)
      end
      return
    end
    done(result or {})
  end, ctx.bufnr)
end

local function report(result)
  local level = result.applied and vim.log.levels.INFO or vim.log.levels.WARN
  vim.notify('codellama: ' .. (result.message or (result.applied and 'done' or 'nothing changed')), level)
end

M.handlers = {
  ['codellama.explain'] = function(command, ctx)
    execute(command, ctx, function(result)
      if result.markdown and result.markdown ~= '' then
        M.show_markdown(result.markdown)
      end
    end)
  end,
  ['codellama.refactor'] = function(command, ctx)
    vim.ui.input({ prompt = 'Refactor with Code Llama (instruction, optional): ' }, function(instruction)
      if instruction == nil then
        return -- cancelled: nothing is asked of the model
      end
      local args = vim.list_slice(command.arguments or {}, 1, 2)
      if instruction ~= '' then
        args[3] = instruction
      end
      execute(vim.tbl_extend('force', command, { arguments = args }), ctx, report)
    end)
  end,
  ['codellama.docstring'] = function(command, ctx)
    execute(command, ctx, report)
  end,
}

--- Register the handlers (vim.lsp.commands is global; the names are ours alone).
function M.register()
  for name, handler in pairs(M.handlers) do
    vim.lsp.commands[name] = handler
  end
end

return M
