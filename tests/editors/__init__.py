"""Editor clients (editors/nvim, editors/vscode) driven for real."""
