# Reference values for fastgmm's parsimonious covariance families, from R's mclust.
#
# Run from the repository root:  Rscript tests/data/mclust/make_fixtures.R
# (Debian: apt-get install r-cran-mclust r-cran-jsonlite).  The suite reads the
# files this writes and does not need R.
#
# Data sets (written as CSV next to this script, features only):
#   diabetes  - mclust's `diabetes` (Reaven & Miller 1979), 145 x 3
#   banknote  - mclust's `banknote` (Flury & Riedwyl 1988), 200 x 6
#   faithful  - R's datasets::faithful (Old Faithful geyser), 272 x 2
#   iris      - R's datasets::iris (Anderson 1935; Fisher 1936), 150 x 4
#
# For every data set and each of mclust's 14 models, `me()` runs EM from the
# same initial hard partition (mclust's model-based hierarchical clustering,
# `hclass(hc(X), G)`) with a tight tolerance, and the fitted log-likelihood,
# BIC (mclust's sign: 2 logL - p log n), number of parameters and the
# parameters are stored in mclust_fixtures.json.
suppressPackageStartupMessages({library(mclust); library(jsonlite)})

here <- "tests/data/mclust"
data(diabetes, package = "mclust")
data(banknote, package = "mclust")
sets <- list(
  diabetes = list(X = as.matrix(diabetes[, -1]), G = 3),
  banknote = list(X = as.matrix(banknote[, -1]), G = 2),
  faithful = list(X = as.matrix(datasets::faithful), G = 3),
  iris = list(X = as.matrix(datasets::iris[, 1:4]), G = 3)
)
ctrl <- emControl(tol = c(1e-14, 1e-14), itmax = c(100000L, 100000L))
out <- list(mclust_version = as.character(packageVersion("mclust")),
            control = list(tol = ctrl$tol, itmax = ctrl$itmax), sets = list())
for (name in names(sets)) {
  X <- sets[[name]]$X
  G <- sets[[name]]$G
  write.csv(X, file.path(here, paste0(name, ".csv")), row.names = FALSE)
  labels <- as.vector(hclass(hc(X), G))
  z <- unmap(labels)
  fits <- list()
  for (model in mclust.options("emModelNames")) {
    fit <- me(data = X, modelName = model, z = z, control = ctrl)
    n <- nrow(X); d <- ncol(X)
    if (is.na(fit$loglik)) { fits[[model]] <- list(failed = TRUE); next }
    p <- nMclustParams(model, d, G)
    sigma <- fit$parameters$variance$sigma        # d x d x G
    fits[[model]] <- list(
      loglik = fit$loglik,
      bic = 2 * fit$loglik - p * log(n),
      n_parameters = p,
      n_iter = as.integer(attr(fit, "info")[1]),
      weights = as.vector(fit$parameters$pro),
      means = t(fit$parameters$mean),             # G x d
      covariances = lapply(seq_len(G), function(k) sigma[, , k]))
  }
  out$sets[[name]] <- list(n = nrow(X), d = ncol(X), G = G, labels = labels - 1L,
                           models = fits)
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, matrix = "rowmajor"),
           file.path(here, "mclust_fixtures.json"))
