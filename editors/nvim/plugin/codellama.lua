-- Commands only; everything else loads on first use (require('codellama').setup() starts the server).
if vim.g.loaded_codellama then
  return
end
vim.g.loaded_codellama = true

local function command(name, fn, desc)
  vim.api.nvim_create_user_command(name, function()
    require('codellama')[fn]()
  end, { desc = desc })
end

command('CodeLlamaStats', 'stats', 'codellama: server counters, latency and model')
command('CodeLlamaPrompt', 'last_prompt', 'codellama: the exact prompt last sent to the model')
command('CodeLlamaToggle', 'toggle', 'codellama: suggestions on/off')
